"""``--format sarif``: SARIF 2.1.0, the format GitHub code scanning and IDEs import.

One run for the whole invocation. ``tool.driver.rules`` lists every rule with its
summary, its documentation as help (plain text and Markdown) and its default level;
each result points at the file and line where the flagged layer is built, as a URI
relative to the repository root (``%SRCROOT%``), which is what code scanning needs to
place it on the diff, percent-encoded as RFC 3986 requires (``my%20models/gpt.py``).
A finding on a layer built inside an installed package points at the user's line that
built the model, with the library line in ``relatedLocations``. A finding without a
location (a whole-model property) is placed at the model's class definition.
``partialFingerprints`` keys a result by rule, file and layer, not line, so an alert
survives edits above it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from archlint import __version__
from archlint.findings import Finding
from archlint.graph import SourceLocation
from archlint.report import Report

if TYPE_CHECKING:
    from archlint.format import FormatOptions

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/archlint/archlint"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}
SRCROOT = "%SRCROOT%"


def render_sarif(reports: list[Report], options: FormatOptions | None = None) -> str:
    from archlint.format import FormatOptions

    options = options or FormatOptions()
    return json.dumps(sarif_document(reports, options.repository_root()), indent=2) + "\n"


def sarif_document(reports: list[Report], root: Path) -> dict[str, Any]:
    from archlint.rules import all_rules

    rules = all_rules()
    index = {rule.code: position for position, rule in enumerate(rules)}
    results = [_result(finding, report, index, root)
               for report in reports for finding in report.findings]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "archlint",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule_descriptor(rule) for rule in rules],
            }},
            "originalUriBaseIds": {SRCROOT: {"uri": root.as_uri() + "/"}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def _rule_descriptor(rule) -> dict[str, Any]:
    from archlint.rules import documentation

    doc = documentation(rule)
    summary = rule.summary()
    return {
        "id": rule.code,
        "name": _pascal(rule.name),
        "shortDescription": {"text": summary},
        "fullDescription": {"text": summary},
        "help": {"text": doc, "markdown": f"**{rule.code} {rule.name}**\n\n{doc}"},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {"tags": ["archlint", _family(rule.code)]},
    }


def _result(finding: Finding, report: Report, index: dict[str, int],
            root: Path) -> dict[str, Any]:
    from archlint.format import relative_uri

    result: dict[str, Any] = {
        "ruleId": finding.code,
        "level": LEVELS[finding.severity],
        "message": {"text": f"{finding.message}\nFix: {finding.fix}"},
    }
    if finding.code in index:
        result["ruleIndex"] = index[finding.code]
    location = finding.location or report.graph.locations.get("") or (
        SourceLocation(report.model.file, 1) if report.model.file else None)
    if location is not None:
        uri = relative_uri(location.file, root)
        result["locations"] = [{"physicalLocation": _physical(location, root)}]
        if finding.related:
            result["relatedLocations"] = [
                {"id": number, "physicalLocation": _physical(related, root),
                 "message": {"text": "the library line that builds the layer"}}
                for number, related in enumerate(finding.related, 1)]
        key = f"{finding.code}|{uri or location.file}|{finding.layer or ''}|{report.model.name}"
        result["partialFingerprints"] = {
            "archlintFinding/v1": hashlib.sha256(key.encode()).hexdigest()[:32]}
    result["properties"] = {"model": report.model.name, "layer": finding.layer,
                            "fix": finding.fix}
    return result


def _physical(location: SourceLocation, root: Path) -> dict[str, Any]:
    from archlint.format import relative_uri

    uri = relative_uri(location.file, root)
    artifact = ({"uri": quote(uri, safe="/"), "uriBaseId": SRCROOT} if uri is not None
                else {"uri": Path(location.file).resolve().as_uri()})
    return {"artifactLocation": artifact, "region": {"startLine": max(location.line, 1)}}


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _family(code: str) -> str:
    return {"AL0": "suppression", "AL1": "reach", "AL2": "memory", "AL3": "compute",
            "AL4": "structure"}.get(code[:3], "other")
