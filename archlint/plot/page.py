"""One self-contained HTML page per model: the pictures and the data they plot.

The PNGs are embedded as base64 ``data:`` URIs and the plotted data as a JSON block
(``<script type="application/json" id="archlint-plot-data">``), so the page is one file
that opens anywhere, offline, with nothing to fetch; a script (or a test) reads the
numbers back with ``json.loads`` of that block.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from archlint.units import format_bytes, format_count

DATA_ID = "archlint-plot-data"

_STYLE = """body{font-family:sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
.note{color:#555}"""


def page(data: dict[str, Any], pictures: dict[str, bytes], notes: list[str]) -> str:
    """The HTML text of one model's page; ``pictures`` maps a caption to PNG bytes."""
    title = f"archlint: {data['model']}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>",
             f"<h1>{html.escape(title)}</h1>"]
    if data.get("advice") is not None:
        parts.append(_advice_table(data["advice"]))
    if data["cost"] is not None:
        parts.append(_cost_table(data["cost"]))
    for caption, png in pictures.items():
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2>\n"
                     f"<img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,"
                     f"{encoded}\">")
    for note in notes:
        parts.append(f"<p class=\"note\">{html.escape(note)}</p>")
    parts.append(f"<script type=\"application/json\" id=\"{DATA_ID}\">\n"
                 f"{embedded_json(data)}\n</script>\n</body>\n</html>\n")
    return "\n".join(parts)


def embedded_json(data: dict[str, Any]) -> str:
    """JSON that cannot end its ``<script>`` element early (``</`` is written ``<\\/``)."""
    return json.dumps(data, indent=1, sort_keys=True).replace("</", "<\\/")


def read_embedded(text: str) -> dict[str, Any]:
    """The data block of a page written by :func:`page`."""
    start = text.index(f"id=\"{DATA_ID}\">") + len(f"id=\"{DATA_ID}\">")
    return json.loads(text[start:text.index("</script>", start)])


def _cost_table(cost: dict[str, Any]) -> str:
    """The plotted points as a table, for a reader who wants the numbers."""
    rows = ["<table>\n<tr><th>n</th><th>peak memory</th><th>FLOPs</th>"
            "<th>attention FLOPs</th></tr>"]
    for n, peak, flops, attention in zip(cost["lengths"], cost["peak_bytes"], cost["flops"],
                                         cost["attention_flops"]):
        rows.append(f"<tr><td>{n}</td><td>{format_bytes(peak)}</td>"
                    f"<td>{format_count(flops)}</td><td>{format_count(attention)}</td></tr>")
    rows.append("</table>")
    facts = [f"budget: {html.escape(cost['budget_label'])}"]
    if cost["fits_up_to"] is not None:
        bound = "" if cost["fits_exact"] else "at least "
        facts.append(f"largest n that fits: {bound}{cost['fits_up_to']}")
    if cost["crossover"] is not None:
        facts.append(f"attention FLOPs overtake the rest at n≈{cost['crossover']}")
    return "\n".join(rows) + f"\n<p>{'; '.join(facts)}</p>"


def _advice_table(advice: dict[str, Any]) -> str:
    """The advice picture's points as a table: the state, its peak and FLOPs, L or S, and
    the verdict on each goal asked."""
    axis = "L(span)" if advice["y_axis"] == "dependency_path" else "S(n)"
    rows = ["<table>\n<tr><th>state</th><th>peak memory</th><th>FLOPs</th>"
            f"<th>{axis}</th><th>fits</th><th>reaches</th><th>on time</th></tr>"]
    for point in advice["points"]:
        verdicts = "".join(f"<td>{_verdict(point[key])}</td>"
                           for key in ("fits", "reaches", "on_time"))
        rows.append(f"<tr><td>{html.escape(point['label'])}</td>"
                    f"<td>{format_bytes(point['peak_bytes'])}</td>"
                    f"<td>{format_count(point['flops'])}</td><td>{point['y']}</td>"
                    f"{verdicts}</tr>")
    rows.append("</table>")
    missing = advice["not_evaluated"]
    if missing:
        rows.append("<p class=\"note\">Not evaluated: "
                    f"{html.escape('; '.join(missing))}.</p>")
    return "\n".join(rows)


def _verdict(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "NO"
