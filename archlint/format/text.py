"""``--format text``: per model a layer table, the analysis sections, then the findings.

Built to be read in an 80-column terminal:

- repeated blocks are folded into one row (``blocks.0-11.ln1``) when every copy has the
  same kind, parameters and source line;
- the parameters column wraps at ``, `` and long layer names are shortened in the middle;
- a finding's ``file:line: CODE [severity] message`` line is never wrapped, so editors and
  ``grep`` can parse it; its ``fix:`` is wrapped under it.

Color (ANSI) only when :class:`~archlint.format.FormatOptions` asks for it; the CLI turns
it on for a terminal (``--color auto``).
"""

from __future__ import annotations

import os
import re
import textwrap
from typing import TYPE_CHECKING

import click
from tabulate import tabulate

from archlint.findings import Finding
from archlint.graph import Layer
from archlint.report import Report
from archlint.units import format_count

if TYPE_CHECKING:
    from archlint.format import FormatOptions

#: narrowest parameters column before the layer name column gives way
MIN_PARAMS_WIDTH = 24
#: widest layer name column (longer names wrap at "." and ":")
MAX_NAME_WIDTH = 30
SEVERITY_COLORS = {"error": "red", "warning": "yellow", "info": "blue"}
_INDEX = re.compile(r"(?<=[.])\d+(?=[.:]|$)|^\d+(?=[.:]|$)")


def render_text(reports: list[Report], options: FormatOptions | None = None) -> str:
    from archlint.format import FormatOptions

    options = options or FormatOptions()
    text = "\n".join(render_report(report, options) for report in reports)
    if len(reports) > 1:
        count = sum(len(report.findings) for report in reports)
        flagged = sum(1 for report in reports if report.findings)
        text += (f"\n{_plural(count, 'finding')} in {flagged} of {len(reports)} models\n"
                 if count else f"\nno findings in {len(reports)} models\n")
    return text


def render_report(report: Report, options: FormatOptions) -> str:
    parts = [_header(report, options), layer_table(report, options.width)]
    for section in (report.reach, report.cost, report.parallel, report.profile,
                    report.baseline):
        if section is not None:
            parts.append(section.render_text())
    parts.append(render_findings(report.findings, options))
    return "\n\n".join(part for part in parts if part) + "\n"


def _header(report: Report, options: FormatOptions) -> str:
    model, graph = report.model, report.graph
    lines = [_style(model.name, options, bold=True)]
    lines += _wrap(f"{model.class_name}, {format_count(model.parameters)} parameters; input: "
                   f"{model.input}; traced with {graph.frontend} at n={graph.trace_len}",
                   options.width, "  ")
    for note in graph.frontend_notes:
        lines += _wrap(f"  note: {note}", options.width, "        ")
    if graph.unattributed:
        lines += _wrap("unattributed ops: " + ", ".join(graph.unattributed), options.width, "  ")
    return "\n".join(lines)


def layer_table(report: Report, width: int = 80) -> str:
    """The classified layers, repeated blocks folded, fitted to ``width`` columns."""
    rows = [(name, layer.kind.value, layer.describe(), _source(layer, report.model.file))
            for name, layer in fold_repeats(report.layers)]
    if not rows:
        return "no layers classified"
    # tabulate makes a column at least its header + 2 wide, and puts 2 spaces between
    kind_width = max(len("kind") + 2, *(len(row[1]) for row in rows))
    source_width = max(len("source") + 2, *(len(row[3]) for row in rows))
    free = width - kind_width - source_width - 6
    name_width = min(max(len("layer") + 2, *(len(row[0]) for row in rows)), MAX_NAME_WIDTH,
                     max(free - MIN_PARAMS_WIDTH, 12))
    params_width = max(free - name_width, MIN_PARAMS_WIDTH)
    cells = [(_wrap_name(name, name_width), kind, _wrap_params(params, params_width), source)
             for name, kind, params, source in rows]
    return tabulate(cells, headers=("layer", "kind", "parameters", "source"),
                    tablefmt="simple", disable_numparse=True)


def fold_repeats(layers: list[Layer]) -> list[tuple[str, Layer]]:
    """``blocks.0.ln1 .. blocks.11.ln1`` -> one ``("blocks.0-11.ln1", layer)`` row.

    Layers fold when their names differ only in numeric path components and their kind,
    parameters and source line agree. A folded row sits where its first layer was.
    """
    groups: dict[tuple, list[tuple[list[int], Layer]]] = {}
    for layer in layers:
        template = _INDEX.sub("#", layer.name)
        indices = [int(m.group()) for m in _INDEX.finditer(layer.name)]
        key = (template, layer.kind, layer.describe(), layer.location)
        groups.setdefault(key, []).append((indices, layer))
    folded = []
    for (template, *_), members in groups.items():
        if len(members) == 1 or "#" not in template:
            folded += [(layer.name, layer) for _, layer in members]
            continue
        columns = zip(*(indices for indices, _ in members))
        parts = [_index_set(sorted(set(column))) for column in columns]
        pieces = template.split("#")
        name = pieces[0] + "".join(part + rest for part, rest in zip(parts, pieces[1:]))
        folded.append((name, members[0][1]))
    return folded


def _index_set(values: list[int]) -> str:
    if len(values) == 1:
        return str(values[0])
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return "{" + ",".join(map(str, values)) + "}"


def _source(layer: Layer, model_file: str | None) -> str:
    if layer.location is None:
        return ""
    if model_file and os.path.abspath(layer.location.file) == os.path.abspath(model_file):
        return f"line {layer.location.line}"
    return f"{os.path.basename(layer.location.file)}:{layer.location.line}"


def _wrap_name(name: str, width: int) -> str:
    """A module path broken after ``.`` or ``:`` to fit ``width`` (continuations indented)."""
    pieces = re.findall(r"[^.:]+[.:]?", name) or [name]
    lines, current = [], ""
    for piece in pieces:
        if current and len(current) + len(piece) > width:
            lines.append(current)
            current = "  "                  # continuation lines are indented
        current += piece
    lines.append(current)
    return "\n".join(_middle(line, width) for line in lines)


def _wrap_params(text: str, width: int) -> str:
    chunks = text.split(", ")
    lines, current = [], ""
    for chunk in chunks:
        candidate = f"{current}, {chunk}" if current else chunk
        if current and len(candidate) + 1 > width:
            lines.append(current + ",")
            current = chunk
        else:
            current = candidate
    lines.append(current)
    return "\n".join(_middle(line, width) for line in lines)


def _middle(text: str, width: int) -> str:
    """``text`` shortened to ``width`` by an ellipsis in the middle (both ends stay)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def render_findings(findings: list[Finding], options: FormatOptions | None = None) -> str:
    from archlint.format import FormatOptions

    options = options or FormatOptions()
    if not findings:
        return _style("no findings", options, fg="green")
    lines = []
    for finding in findings:
        where = str(finding.location) if finding.location else "<model>"
        color = SEVERITY_COLORS[finding.severity]
        lines.append(f"{_style(where, options, bold=True)}: "
                     f"{_style(finding.code, options, fg=color, bold=True)} "
                     f"{_style(f'[{finding.severity}]', options, fg=color)} {finding.message}")
        lines += _wrap(f"    fix: {finding.fix}", options.width, " " * 9)
    lines.append(_plural(len(findings), "finding"))
    return "\n".join(lines)


def _wrap(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(text, width=width, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [text]


def _style(text: str, options: FormatOptions, **style) -> str:
    return click.style(text, **style) if options.color else text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"
