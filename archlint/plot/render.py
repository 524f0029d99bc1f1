"""One report to its files: which pictures it can have, drawn, and the page around them.

A picture without data is left out with a note on the page saying why (no length could
be predicted; ``--no-dynamic`` or a failed probe leaves no gradient profile), so every
model gets a page whatever its report holds.
"""

from __future__ import annotations

from typing import Any

from archlint.plot.advice import advice_data, advice_figure
from archlint.plot.data import plot_data
from archlint.plot.figures import cost_figure, default_style, erf_figure, memory_figure, png_bytes
from archlint.plot.page import page
from archlint.report import Report


def render_model(report: Report, advice: Any = None) -> dict[str, bytes]:
    """``{file suffix: content}``: ``-advice.png`` when ``advice`` (the model's
    :class:`~archlint.advise.AdviceReport`) is given, ``-cost.png``, ``-memory.png``,
    ``-erf.png`` where the report has their data, and ``.html``, in that order."""
    data = plot_data(report)
    if advice is not None:
        data["advice"] = advice_data(advice)
    model, cost, reach = data["model"], data["cost"], data["reach"]
    files: dict[str, bytes] = {}
    captions: dict[str, bytes] = {}
    notes: list[str] = []
    with default_style():
        if advice is not None:
            files["-advice.png"] = png_bytes(advice_figure(model, data["advice"]))
            captions[f"Changes on the two axes at n={data['advice']['seq_len']}"] = \
                files["-advice.png"]
        if cost is not None:
            files["-cost.png"] = png_bytes(cost_figure(model, cost, data["image"]))
            captions["Peak memory and FLOPs against n"] = files["-cost.png"]
            files["-memory.png"] = png_bytes(memory_figure(model, cost))
            captions[f"Memory by category at n={cost['target']['seq_len']}"] = \
                files["-memory.png"]
        else:
            notes.append(_no_cost(report))
        probe = None if reach is None else reach["probe"]
        if probe is not None:
            files["-erf.png"] = png_bytes(erf_figure(model, reach))
            captions["Effective receptive field against the static receptive field"] = \
                files["-erf.png"]
        else:
            notes.append(_no_probe(report))
    files[".html"] = page(data, captions, notes).encode("utf-8")
    return files


def _no_cost(report: Report) -> str:
    failures = getattr(report.cost, "failures", None) or {}
    reasons = "; ".join(f"n={n}: {reason}" for n, reason in sorted(failures.items()))
    return "No cost pictures: no length could be predicted" + (f" ({reasons})" if reasons
                                                                 else "") + "."


def _no_probe(report: Report) -> str:
    if not report.settings.dynamic:
        return ("No ERF picture: the gradient probe did not run (--no-dynamic); the static "
                "receptive field is in the report.")
    return "No ERF picture: the gradient probe did not run on this model (see the report's notes)."
