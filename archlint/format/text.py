"""``--format text``: the per-layer table, analysis sections, then findings, lint-style."""

from __future__ import annotations

from tabulate import tabulate

from archlint.findings import Finding
from archlint.report import Report
from archlint.units import format_count

#: widest "key parameters" cell before it is shortened, to stay readable at 80 columns
PARAMS_WIDTH = 34


def render_text(reports: list[Report]) -> str:
    return "\n".join(render_report(report) for report in reports)


def render_report(report: Report) -> str:
    parts = [_header(report), layer_table(report)]
    for section in (report.reach, report.cost, report.profile):
        if section is not None:
            parts.append(section.render_text())
    parts.append(render_findings(report.findings))
    return "\n\n".join(part for part in parts if part) + "\n"


def _header(report: Report) -> str:
    model, graph = report.model, report.graph
    lines = [
        f"{model.name}  ({model.class_name}, {format_count(model.parameters)} parameters)",
        f"input: {model.input}; traced with {graph.frontend} at n={graph.trace_len}",
    ]
    lines += [f"  note: {note}" for note in graph.frontend_notes]
    if graph.unattributed:
        lines.append("unattributed ops: " + ", ".join(graph.unattributed))
    return "\n".join(lines)


def layer_table(report: Report) -> str:
    rows = [
        (layer.name, layer.kind.value, _shorten(layer.describe()),
         "" if layer.location is None else f"line {layer.location.line}")
        for layer in report.layers
    ]
    return tabulate(rows, headers=("layer", "kind", "parameters", "source"),
                    tablefmt="simple")


def _shorten(text: str) -> str:
    return text if len(text) <= PARAMS_WIDTH else text[: PARAMS_WIDTH - 1] + "…"


def render_findings(findings: list[Finding]) -> str:
    if not findings:
        return "no findings"
    lines = []
    for finding in findings:
        where = str(finding.location) if finding.location else "<model>"
        lines.append(f"{where}: {finding.code} [{finding.severity}] {finding.message}")
        lines.append(f"    fix: {finding.fix}")
    count = len(findings)
    lines.append(f"{count} finding{'s' if count != 1 else ''}")
    return "\n".join(lines)
