"""The three pictures of one model, drawn with matplotlib's Agg canvas from plot data.

- :func:`cost_figure`: peak memory and FLOPs of one step against n, log-log, with the
  budget, the largest n that fits and the attention crossover marked;
- :func:`memory_figure`: what holds the bytes at the peak, by category, at the target n;
- :func:`erf_figure`: the gradient mass by input offset against the static receptive
  field at the probe length.

Figures are built on :class:`matplotlib.figure.Figure` with a ``FigureCanvasAgg`` (no
pyplot, no global backend switch) under matplotlib's default style, whatever the user's
``matplotlibrc`` says, at a fixed size and dpi; :func:`png_bytes` leaves out the
``Software`` metadata, so the same report always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from archlint.cost.memory import CATEGORIES, LABELS
from archlint.units import format_bytes

DPI = 100
#: PNG text chunks: none (matplotlib writes its version as "Software" by default)
PNG_METADATA = {"Software": None}
COLORS = {"peak": "#1f77b4", "attention": "#d62728", "other": "#7f7f7f", "budget": "#e6550d",
          "fits": "#2ca02c", "crossover": "#9467bd", "static": "#ff7f0e", "erf": "#2ca02c",
          "asked": "#ffbf00"}


@contextlib.contextmanager
def default_style() -> Iterator[None]:
    """matplotlib's own defaults while drawing: a user's matplotlibrc or style does not
    change archlint's pictures (restored afterwards)."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        yield


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes, identical for identical data."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def length_label(n: float) -> str:
    """A length as the command line writes it: 512, 8k, 1M (binary suffixes)."""
    n = int(round(n))
    for suffix, scale in (("M", 1 << 20), ("k", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


#: decimal units, as ``format_bytes`` and ``format_count`` use them
_BYTE_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3), ("B", 1))
_COUNT_UNITS = (("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3),
                ("", 1))


def _scaled(value: float, units: tuple[tuple[str, int], ...]) -> str:
    """A tick label with three significant digits (``2.34 GB``, ``500 MB``): ticks of a
    narrow range stay distinct."""
    for unit, scale in units:
        if abs(value) >= scale or scale == 1:
            return f"{value / scale:.3g} {unit}".rstrip()
    return f"{value:.3g}"


def _size_label(value: float, _position: object = None) -> str:
    return _scaled(value, _BYTE_UNITS)


def _count_label(value: float, _position: object = None) -> str:
    return _scaled(value, _COUNT_UNITS)


def _length_axis(axis, low: float, high: float, image: bool) -> None:  # noqa: ANN001
    """A log-2 n axis with ticks at powers of two, at most eight of them labelled."""
    axis.set_xscale("log", base=2)
    first, last = math.floor(math.log2(low)), math.ceil(math.log2(high))
    step = max(1, math.ceil((last - first + 1) / 8))
    axis.set_xticks([2.0 ** k for k in range(first, last + 1, step)])
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: length_label(v)))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlim(low, high)
    axis.set_xlabel("image side n (log scale)" if image else "sequence length n (log scale)")
    axis.grid(True, which="major", alpha=0.3)


def _value_axis(axis, values: list[float], formatter) -> None:  # noqa: ANN001
    """A log-10 value axis labelled in ``formatter``'s units: ticks at 1, 2, 5 x 10^k
    where the values span few decades (at 10^k only where they span many)."""
    shown = [v for v in values if v and v > 0]
    decades = math.log10(max(shown) / min(shown)) if shown else 0.0
    subs = (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    axis.set_yscale("log")
    axis.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.yaxis.set_major_formatter(FuncFormatter(formatter))
    axis.yaxis.set_minor_locator(LogLocator(base=10, subs="auto"))
    axis.yaxis.set_minor_formatter(NullFormatter())


def _legend_below(axis) -> None:  # noqa: ANN001 - an Axes
    """The legend under the panel: the curves and marks stay uncovered."""
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small",
                frameon=False)


def _positive(xs: list[int], ys: list[int]) -> tuple[list[int], list[int]]:
    """The points a log axis can show (a zero has no logarithm)."""
    kept = [(x, y) for x, y in zip(xs, ys) if y > 0]
    return [x for x, _ in kept], [y for _, y in kept]


def cost_figure(model: str, cost: dict[str, Any], image: bool = False) -> Figure:
    """Peak memory (left) and FLOPs (right) of one step against n, log-log; ``image``:
    n is the side of an n x n input."""
    figure = _figure(12.0, 5.6)
    memory_axis, flops_axis = figure.subplots(1, 2)
    lengths = cost["lengths"]
    marks = [m for m in (cost["fits_up_to"], cost["crossover"]) if m]
    low, high = min(lengths) / 1.4, max(lengths + marks) * 1.4
    _memory_panel(memory_axis, cost, low, high, image)
    _flops_panel(flops_axis, cost, low, high, image)
    figure.suptitle(f"{model}: cost of one {_step(cost)}")
    return figure


def _step(cost: dict[str, Any]) -> str:
    optimizer = f", {cost['optimizer']}" if cost["mode"] == "train" else ""
    return f"{cost['mode']} step (batch {cost['batch']}, {cost['dtype']}{optimizer})"


def _memory_panel(axis, cost: dict[str, Any], low: float, high: float,  # noqa: ANN001
                  image: bool) -> None:
    lengths = cost["lengths"]
    order = f", {cost['memory_order']}" if cost.get("memory_order") not in (None, "?") else ""
    axis.plot(*_positive(lengths, cost["peak_bytes"]), "o-", color=COLORS["peak"],
              label=f"peak memory{order}")
    if any(cost["attention_score_bytes"]):
        axis.plot(*_positive(lengths, cost["attention_score_bytes"]), "s--",
                  color=COLORS["attention"], label="attention scores at the peak")
    _requested(axis, cost, cost["peak_bytes"])
    budget = cost["budget_bytes"]
    if budget:
        axis.axhline(budget, color=COLORS["budget"], linestyle="--",
                     label=f"budget {cost['budget_label']}")
    fits = cost["fits_up_to"]
    if fits:
        bound = "" if cost["fits_exact"] else "≥ "
        axis.axvline(fits, color=COLORS["fits"], linestyle=":", linewidth=2,
                     label=f"largest n that fits: {bound}{fits}")
    elif fits == 0:
        axis.text(0.02, 0.02, "does not fit the budget even at n=1", transform=axis.transAxes,
                  color=COLORS["budget"])
    _crossover(axis, cost)
    _length_axis(axis, low, high, image)
    _value_axis(axis, cost["peak_bytes"] + cost["attention_score_bytes"] + [budget or 0],
                _size_label)
    axis.set_ylabel("peak memory of one step (log scale)")
    axis.set_title("peak memory against n")
    _legend_below(axis)


def _flops_panel(axis, cost: dict[str, Any], low: float, high: float,  # noqa: ANN001
                 image: bool) -> None:
    lengths = cost["lengths"]
    order = f", {cost['flops_order']}" if cost.get("flops_order") not in (None, "?") else ""
    axis.plot(*_positive(lengths, cost["flops"]), "o-", color=COLORS["peak"],
              label=f"FLOPs of the step{order}")
    if any(cost["attention_flops"]):
        other = [t - a for t, a in zip(cost["flops"], cost["attention_flops"])]
        axis.plot(*_positive(lengths, cost["attention_flops"]), "s--",
                  color=COLORS["attention"], label="attention FLOPs (the n² part)")
        axis.plot(*_positive(lengths, other), "^--", color=COLORS["other"],
                  label="all other FLOPs")
    _requested(axis, cost, cost["flops"])
    _crossover(axis, cost)
    _length_axis(axis, low, high, image)
    _value_axis(axis, cost["flops"] + cost["attention_flops"], _count_label)
    axis.set_ylabel("FLOPs of one step (log scale)")
    axis.set_title("FLOPs against n")
    _legend_below(axis)


def _requested(axis, cost: dict[str, Any], values: list[int]) -> None:  # noqa: ANN001
    """The lengths asked for (``--seq-len``) as stars on the curve."""
    at = dict(zip(cost["lengths"], values))
    xs, ys = _positive(cost["seq_len"], [at[n] for n in cost["seq_len"]])
    if xs:
        label = "--seq-len " + ",".join(length_label(n) for n in cost["seq_len"])
        axis.plot(xs, ys, "*", markersize=14, color=COLORS["asked"], markeredgecolor="black",
                  linestyle="none", label=label, zorder=5)


def _crossover(axis, cost: dict[str, Any]) -> None:  # noqa: ANN001
    if cost["crossover"]:
        axis.axvline(cost["crossover"], color=COLORS["crossover"], linestyle="-.",
                     label=f"attention FLOPs overtake the rest: n≈{cost['crossover']}")


def memory_figure(model: str, cost: dict[str, Any]) -> Figure:
    """The bytes alive at the peak of one step at the target n, one bar per category."""
    target = cost["target"]
    parts = [(c, target["memory"][c]) for c in CATEGORIES if target["memory"][c]]
    figure = _figure(9.0, 1.6 + 0.5 * max(1, len(parts)))
    axis = figure.subplots()
    peak = target["peak_bytes"]
    labels = [LABELS[c] for c, _ in parts][::-1]
    values = [v for _, v in parts][::-1]
    bars = axis.barh(labels, values, color=COLORS["peak"])
    for bar, value in zip(bars, values):
        share = "" if not peak else " (<1% of the peak)" if value < 0.005 * peak else \
            f" ({value / peak:.0%} of the peak)"
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                  f" {format_bytes(value)}{share}", va="center", fontsize="small")
    axis.set_xlim(0, max(values + [1]) * 1.45)
    axis.xaxis.set_major_formatter(FuncFormatter(_size_label))
    total = sum(values)
    axis.set_xlabel("bytes alive at the peak" if total == peak else
                    f"bytes alive at the peak (the categories sum to {format_bytes(total)}, "
                    f"not the {format_bytes(peak)} peak:\n{target['method']})")
    axis.grid(True, axis="x", alpha=0.3)
    fits = "" if not cost["budget_bytes"] else \
        f"; budget {cost['budget_label']}: " + ("fits" if peak <= cost["budget_bytes"]
                                               else "does NOT fit")
    axis.set_title(f"peak {format_bytes(peak)}, reached in the {target['phase']} pass{fits}",
                   fontsize="medium")
    figure.suptitle(f"{model}: memory of one {_step(cost)} at n={target['seq_len']}")
    return figure


def erf_figure(model: str, reach: dict[str, Any]) -> Figure:
    """Gradient mass by input offset against the static receptive field, per axis."""
    probe = reach["probe"]
    axes_data = probe["axes"]
    figure = _figure(11.0, 4.8 * len(axes_data))
    panels = figure.subplots(len(axes_data), 1, squeeze=False)[:, 0]
    for panel, (axis_name, data) in zip(panels, axes_data.items()):
        field = reach["receptive_field"][axis_name]
        target = f"R = {field['expr']} at n={reach['target_len']}" if field["shape"] == \
            "bounded" else f"R = {field['expr']} ({field['shape']}) at any n"
        _erf_panel(panel, axis_name, data, probe["probe_len"], len(axes_data) > 1, target)
    figure.suptitle(f"{model}: effective receptive field at probe length {probe['probe_len']}"
                    f" ({probe['seeds']} random inputs, {probe['dtype']})")
    return figure


def _erf_panel(axis, name: str, data: dict[str, Any], probe_len: int,  # noqa: ANN001
               named: bool, target: str) -> None:
    offsets, mass = data["offsets"], data["mass"]
    axis.bar(offsets, mass, width=1.0, color=COLORS["peak"], alpha=0.85,
             label="share of the gradient mass at each input position")
    erf = data["erf"]
    if erf:
        axis.axvspan(erf["start"] - 0.5, erf["end"] + 0.5, color=COLORS["erf"], alpha=0.15,
                     label=f"effective receptive field ({erf['mass']:.0%} of the mass): "
                           f"{erf['span']} positions")
    static = data["static_support"]
    if static:
        size = static[1] - static[0] + 1
        legend = (f"static receptive field here: {size} positions, offsets "
                  f"{static[0]}..{static[1]} ({target})")
        for edge, label in ((static[0] - 0.5, legend), (static[1] + 0.5, None)):
            axis.axvline(edge, color=COLORS["static"], linestyle="--", linewidth=2,
                         label=label)
    support = data["gradient_support"]
    if support and support != static:
        axis.axvspan(support[0] - 0.5, support[1] + 0.5, fill=False, hatch="//",
                     edgecolor=COLORS["other"], linewidth=0,
                     label=f"non-zero gradient: offsets {support[0]}..{support[1]}")
    where = f" along {name}" if named else ""
    if data["aligned_input"] is None:
        axis.set_xlabel(f"input position{where} (of {probe_len}; the output has no sequence "
                        "axis to align with)")
    else:
        axis.axvline(0, color="black", linewidth=0.8, label="the probed output's own position")
        axis.set_xlabel(f"input offset from the probed output{where} (positions; "
                        f"the probe input has {probe_len})")
    axis.set_xlim(offsets[0] - 1, offsets[-1] + 1)
    axis.set_ylim(0, max(mass + [0]) * 1.15 or 1)
    axis.set_ylabel("share of the gradient mass")
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small",
                frameon=False)
