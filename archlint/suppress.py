"""``# archlint: noqa`` comments: silence a finding where the flagged layer is built.

A finding is located at the line that constructs its layer (``Finding.location``). A
comment ``# archlint: noqa: AL201`` (several codes: ``AL201, AL106``) or a bare
``# archlint: noqa`` on any physical line of the statement holding that line suppresses
it — so the comment may sit after the closing parenthesis of a call that black split
over several lines. Only real comments count (read with :mod:`tokenize`), never text
inside strings.

With ``warn_unused_noqa`` every directive in the model's source files that suppressed
nothing is reported as an AL001 finding (:mod:`archlint.rules.unused_noqa`), naming the
codes that did not fire.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from dataclasses import dataclass, field
from functools import lru_cache

from archlint.findings import Finding
from archlint.graph import SourceLocation
from archlint.report import Report
from archlint.settings import Settings

_WORD, _CODE = r"[A-Za-z]+\d*", r"[A-Za-z]+\d+"
#: ``noqa: CODE, CODE`` (any word after the colon is read as a code, so a typo such as
#: ``NOPE`` is caught instead of acting as a bare noqa); ``noqa AL106`` without the colon
#: names its codes as well
NOQA = re.compile(
    rf"#\s*archlint\s*:\s*noqa\b(?:\s*:\s*(?P<codes>{_WORD}(?:\s*,\s*{_WORD}|\s+{_CODE})*)"
    rf"|\s+(?P<bare_codes>{_CODE}(?:\s*,\s*{_WORD}|\s+{_CODE})*))?",
    re.IGNORECASE)


@dataclass
class Directive:
    """One ``# archlint: noqa`` comment and the lines of the statement it covers."""

    file: str
    line: int                                  # the comment's own line
    codes: tuple[str, ...]                     # empty: every code
    covers: range                              # statement lines it applies to
    used: set[str] = field(default_factory=set)

    def suppresses(self, finding: Finding) -> bool:
        return finding.code in self.codes if self.codes else True

    def unknown(self) -> list[str]:
        """Codes no rule has: they suppress nothing and are always reported (AL001)."""
        from archlint.ruleinfo import info_by_code

        return [code for code in self.codes if info_by_code(code) is None]

    def text(self) -> str:
        return "# archlint: noqa" + (f": {', '.join(self.codes)}" if self.codes else "")


def directives(path: str) -> list[Directive]:
    """Every noqa directive of a Python file (none if it cannot be read or parsed)."""
    key = os.path.abspath(path)
    try:
        stamp = os.stat(key).st_mtime_ns
    except OSError:
        return []
    return [Directive(path, d.line, d.codes, d.covers) for d in _parsed(key, stamp)]


@lru_cache(maxsize=256)
def _parsed(path: str, stamp: int) -> tuple[Directive, ...]:
    try:
        with open(path, "rb") as handle:
            source = handle.read()
        comments = [(tok.start[0], tok.string) for tok in
                    tokenize.tokenize(io.BytesIO(source).readline) if tok.type == tokenize.COMMENT]
    except (OSError, SyntaxError, tokenize.TokenError, UnicodeDecodeError):
        return ()
    spans = _statement_spans(source)
    found = []
    for line, comment in comments:
        match = NOQA.search(comment)
        if match is None:
            continue
        listed = match["codes"] or match["bare_codes"] or ""
        codes = tuple(sorted({c.upper() for c in re.split(r"[,\s]+", listed) if c}))
        found.append(Directive(path, line, codes, spans.get(line, range(line, line + 1))))
    return tuple(found)


def _statement_spans(source: bytes) -> dict[int, range]:
    """Line -> the lines of the innermost simple statement containing it."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    spans: dict[int, range] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not hasattr(node, "body"):
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            for line in span:
                if line not in spans or len(span) < len(spans[line]):
                    spans[line] = span
    return spans


def apply_suppressions(report: Report, settings: Settings | None = None) -> None:
    """Drop suppressed findings from ``report``; add AL001 for unused directives if asked."""
    settings = settings or report.settings
    files = _source_files(report)
    found = {file: directives(file) for file in files}
    kept = []
    for finding in report.findings:
        directive = _directive_for(finding.location, found)
        if directive is not None and directive.suppresses(finding):
            directive.used.add(finding.code)
        else:
            kept.append(finding)
    kept.extend(_unused(found, settings))
    report.findings = sorted(kept, key=Finding.sort_key)


def _directive_for(location: SourceLocation | None,
                   found: dict[str, list[Directive]]) -> Directive | None:
    if location is None:
        return None
    for directive in found.get(location.file, ()):
        if location.line in directive.covers:
            return directive
    return None


def _source_files(report: Report) -> list[str]:
    """The user files a finding of this model can point into."""
    files = {loc.file for loc in report.graph.locations.values()}
    files |= {layer.location.file for layer in report.layers if layer.location}
    files |= {f.location.file for f in report.findings if f.location}
    if report.model.file:
        files.add(report.model.file)
    return sorted(file for file in files if file.endswith(".py"))


def _unused(found: dict[str, list[Directive]], settings: Settings) -> list[Finding]:
    from archlint.rules import enabled_rules, rule_by_code
    from archlint.rules.unused_noqa import UnusedNoqa

    enabled = {rule.code for rule in enabled_rules(settings)}
    if UnusedNoqa.code not in enabled:
        return []
    rule = UnusedNoqa(settings)
    findings = []
    for file in sorted(found):
        for directive in found[file]:
            if not settings.warn_unused_noqa:
                if directive.unknown():                 # a typo is reported unasked
                    findings.append(rule.finding(
                        f"unknown rule code {', '.join(directive.unknown())} in "
                        f"`{directive.text()}`: it suppresses nothing",
                        fix="use the codes `archlint rules` lists, e.g. "
                            "`# archlint: noqa: AL106`",
                        location=SourceLocation(file, directive.line)))
                continue
            unused = _unused_codes(directive, enabled, rule_by_code)
            if unused is None:
                continue
            findings.append(rule.finding(
                f"unused suppression `{directive.text()}`" + (f" ({unused})" if unused else ""),
                fix=_fix(directive),
                location=SourceLocation(file, directive.line)))
    return findings


def _unused_codes(directive: Directive, enabled: set[str], rule_by_code) -> str | None:
    """Why a directive is (partly) unused, ``""`` for a bare one, None when fully used."""
    if not directive.codes:
        return None if directive.used else ""
    reasons = []
    for code in directive.codes:
        if code in directive.used:
            continue
        if rule_by_code(code) is None:
            reasons.append(f"{code}: unknown rule")
        elif code not in enabled:
            reasons.append(f"{code}: not enabled")
        else:
            reasons.append(f"{code}: no finding")
    return "; ".join(reasons) if reasons else None


def _fix(directive: Directive) -> str:
    remaining = sorted(directive.used)
    if directive.codes and remaining:
        return f"keep only the codes that fire: `# archlint: noqa: {', '.join(remaining)}`"
    return "remove the comment: the layer it covers no longer has that finding"
