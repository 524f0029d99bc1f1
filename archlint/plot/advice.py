"""The picture of ``archlint advise --plot``: every change on the selection guide's two axes.

The guide moves a model along two axes: cut the cost (x: peak memory of one step at n,
log scale, against the budget) and shorten the path (y: the dependency path L(span) in
hops, log scale, against AL102's threshold; without ``--span``, the serial steps S(n)
against ``--max-serial-steps``). The model as it is and each evaluated change are one
point each, numbered as in the text table; a state from which the span cannot be reached
at all (L infinite) sits in the grey band at the top. Green points meet every goal
asked (fit, reach, serial steps); orange ones miss at least one.

:func:`advice_data` reads the finished :class:`~archlint.advise.AdviceReport` (nothing is
re-analyzed); the page embeds it beside the check's own data, so a test can compare each
plotted point with ``advise --format json``.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from archlint.plot.figures import COLORS, _figure, _legend_below, _size_label


def advice_data(advice: Any) -> dict[str, Any]:
    """The points of the advice picture: the position and each evaluated change, with
    the goals they are judged against (JSON-able; ``inf`` as the string "inf")."""
    goals = advice.goals
    by_path = goals.span is not None
    points = [_point("as is", "now", advice.position, by_path)]
    for index, suggestion in enumerate(advice.suggestions, 1):
        if suggestion.standing is not None:
            points.append(_point(f"{index}. {suggestion.title}", suggestion.key,
                                 suggestion.standing, by_path, index))
    return {
        "seq_len": goals.seq_len,
        "y_axis": "dependency_path" if by_path else "serial_steps",
        "span": goals.span,
        "budget_bytes": goals.budget, "budget_label": goals.budget_label,
        "max_path": goals.max_path if by_path else None,
        "max_serial_steps": None if by_path else goals.max_serial_steps,
        "points": points,
        "not_evaluated": [s.title for s in advice.suggestions if s.standing is None],
    }


def _point(label: str, key: str, standing: Any, by_path: bool,
           index: int | None = None) -> dict[str, Any]:
    y = _finite_or_inf(standing.dependency_path) if by_path else standing.serial_steps
    return {"label": label, "key": key, "index": index, "peak_bytes": standing.peak,
            "flops": standing.flops, "y": y, "fits": standing.fits,
            "reaches": standing.reaches, "on_time": standing.on_time}


def _finite_or_inf(value: float | None) -> Any:
    if value is None or math.isinf(value):
        return "inf"
    return int(value) if float(value).is_integer() else value


def _memory_axis(axis, values: list[int]) -> None:  # noqa: ANN001 - an Axes
    """A log-10 x axis in bytes, ticks at 1, 2, 5 x 10^k over a narrow range."""
    low, high = min(values), max(values)
    subs = (1.0, 2.0, 5.0) if math.log10(high / low) < 2.5 else (1.0,)
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.xaxis.set_major_formatter(FuncFormatter(_size_label))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlim(low / 2.0, high * 2.0)


def _short(label: str, width: int = 44) -> str:
    """A point's label beside it: ``3. sliding-window attention…``."""
    return label if len(label) <= width else label[:width - 1].rstrip() + "…"


def advice_figure(model: str, data: dict[str, Any]) -> Figure:
    """Peak memory (x) against the dependency path or serial steps (y), one point per
    state of the model, with the budget and the threshold lines."""
    figure = _figure(10.0, 6.4)
    axis = figure.subplots()
    points = data["points"]
    finite = [p["y"] for p in points if p["y"] != "inf"]
    threshold = data["max_path"] if data["y_axis"] == "dependency_path" else \
        data["max_serial_steps"]
    top = max(finite + [threshold or 1, 1]) * 4.0
    peaks = [p["peak_bytes"] for p in points if p["peak_bytes"] > 0]
    budget = data["budget_bytes"]
    for order, point in enumerate(points):
        y = top / 1.6 if point["y"] == "inf" else max(point["y"], 0.7)
        now = point["key"] == "now"
        color = COLORS["peak"] if now else (
            COLORS["fits"] if False not in (point["fits"], point["reaches"], point["on_time"])
            else COLORS["budget"])
        axis.plot([max(point["peak_bytes"], 1)], [y], "D" if now else
                  ("^" if point["y"] == "inf" else "o"), markersize=11 if now else 8,
                  color=color, markeredgecolor="black", linestyle="none", zorder=5,
                  label="the model as it is" if now else _short(point["label"]))
        # the number beside the point, above and below in turn: close points stay legible
        axis.annotate("as is" if now else str(point["index"]),
                      (max(point["peak_bytes"], 1), y), textcoords="offset points",
                      xytext=(6, 6 if order % 2 else -14), fontsize="small")
    if budget:
        axis.axvline(budget, color=COLORS["budget"], linestyle="--",
                     label=f"budget {data['budget_label']}")
    if threshold:
        name = "AL102 path threshold" if data["y_axis"] == "dependency_path" else \
            "--max-serial-steps"
        axis.axhline(threshold, color=COLORS["crossover"], linestyle="-.",
                     label=f"{name}: {threshold}")
    if any(p["y"] == "inf" for p in points):
        axis.axhspan(top / 2.4, top, color=COLORS["other"], alpha=0.12,
                     label="does not reach the span (L = inf)")
    _memory_axis(axis, peaks + ([budget] if budget else []))
    axis.set_yscale("log")
    axis.set_ylim(0.5, top)
    axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_xlabel(f"peak memory of one step at n={data['seq_len']} (log scale)")
    axis.set_ylabel("dependency path L(span) in hops (log scale)"
                    if data["y_axis"] == "dependency_path" else
                    f"serial steps S(n) at n={data['seq_len']} (log scale)")
    axis.grid(True, which="major", alpha=0.3)
    axis.set_title("numbered as in the text table; green: meets every goal, orange: misses "
                   "one", fontsize="medium")
    _legend_below(axis)
    goal = f"span {data['span']}" if data["span"] is not None else "serial steps"
    figure.suptitle(f"{model}: changes on the two axes at n={data['seq_len']} ({goal})")
    return figure
