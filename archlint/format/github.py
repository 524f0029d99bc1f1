"""``--format github``: GitHub Actions workflow commands, one annotation per finding.

``::error file=models/gpt.py,line=23,title=AL106 positional-table-too-short::message``
shows the finding on the pull request's diff at the line that builds the layer. Paths
are relative to the repository root (the workspace GitHub checks out). Severities map
to ``error`` / ``warning`` / ``notice``. Values are escaped as the runner expects:
``%``, CR and LF everywhere, and ``:`` and ``,`` inside properties.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archlint.findings import Finding
from archlint.report import Report

if TYPE_CHECKING:
    from archlint.format import FormatOptions

COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}


def render_github(reports: list[Report], options: FormatOptions | None = None) -> str:
    from archlint.format import FormatOptions

    root = (options or FormatOptions()).repository_root()
    lines = [annotation(finding, report, root)
             for report in reports for finding in report.findings]
    lines += [improvement(text, report, root) for report in reports
              for text in _improvements(report)]
    return "".join(line + "\n" for line in lines)


def annotation(finding: Finding, report: Report, root) -> str:
    from archlint.format import relative_uri

    properties = []
    if finding.location is not None:
        path = relative_uri(finding.location.file, root) or finding.location.file
        properties += [f"file={_property(path)}", f"line={finding.location.line}"]
    elif report.model.file:
        path = relative_uri(report.model.file, root) or report.model.file
        properties.append(f"file={_property(path)}")
    properties.append(f"title={_property(f'{finding.code} {finding.rule}')}")
    message = f"{finding.message} ({report.model.name})\nfix: {finding.fix}"
    return f"::{COMMANDS[finding.severity]} {','.join(properties)}::{_data(message)}"


def _improvements(report: Report) -> list[str]:
    diff = report.baseline
    return [] if diff is None else [move.text for move in diff.improvements]


def improvement(text: str, report: Report, root) -> str:
    """A baseline improvement (a finding gone, peak or FLOPs down) as a notice."""
    from archlint.format import relative_uri

    properties = []
    if report.model.file:
        path = relative_uri(report.model.file, root) or report.model.file
        properties.append(f"file={_property(path)}")
    properties.append(f"title={_property('archlint baseline: improved')}")
    return f"::notice {','.join(properties)}::{_data(f'{text} ({report.model.name})')}"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
