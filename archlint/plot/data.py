"""What the pictures show, read off a finished report as plain JSON-able data.

Nothing here runs an analysis: every number comes from the report's cost and reach
sections (the same figures ``--format json`` prints). The figures are drawn from this
data and the HTML page embeds it, so a reader (or a test) can check each plotted point
against the report.
"""

from __future__ import annotations

from typing import Any

from archlint.cost.memory import CATEGORIES
from archlint.reach.report import field_dict
from archlint.report import Report


def plot_data(report: Report) -> dict[str, Any]:
    """Everything the three pictures of one model plot, as JSON-able data."""
    return {
        "model": report.model.name,
        "input": report.model.input,
        "image": bool(report.graph.input_spec.spatial),
        "cost": cost_data(report),
        "reach": reach_data(report),
    }


def cost_data(report: Report) -> dict[str, Any] | None:
    """Peak memory and FLOPs at every length the report predicted (the curve's grid and
    each ``--seq-len``), the budget, the largest n that fits, the crossover, and the
    memory split at the target length. None when nothing could be predicted."""
    cost = report.cost
    if cost is None or not getattr(cost, "predictions", None):
        return None
    points = _points(cost)
    lengths = sorted(points)
    curve = cost.curve
    target = cost.target
    return {
        "mode": cost.mode, "dtype": cost.dtype, "batch": cost.batch,
        "optimizer": cost.optimizer, "budget_bytes": cost.budget, "device": cost.device,
        "budget_label": cost.budget_label(),
        "lengths": lengths,
        "peak_bytes": [points[n]["peak_bytes"] for n in lengths],
        "flops": [points[n]["flops"] for n in lengths],
        "attention_score_bytes": [points[n]["attention_score_bytes"] for n in lengths],
        "attention_flops": [points[n]["attention_flops"] for n in lengths],
        "seq_len": [p.seq_len for p in cost.predictions],
        "fits_up_to": None if curve is None else curve.fits_up_to,
        "fits_exact": None if curve is None else curve.fits_exact,
        "crossover": None if curve is None else curve.crossover,
        "memory_order": None if curve is None else curve.memory_order,
        "flops_order": None if curve is None else curve.flops_order,
        "target": {
            "seq_len": target.seq_len,
            "peak_bytes": target.peak,
            "phase": target.memory.phase,
            "memory": {c: target.memory.parts.get(c, 0) for c in CATEGORIES},
            "flops": target.flops,
            "method": target.method,
        },
        "failures": {str(n): reason for n, reason in sorted(cost.failures.items())},
    }


def _points(cost) -> dict[int, dict[str, int]]:  # noqa: ANN001 - a CostReport
    """One point per predicted length: the curve's grid and every ``--seq-len``."""
    points: dict[int, dict[str, int]] = {}
    curve = cost.curve
    if curve is not None:
        for i, n in enumerate(curve.lengths):
            points[n] = {"peak_bytes": curve.peaks[i], "flops": curve.flops[i],
                         "attention_score_bytes": curve.attention_bytes[i],
                         "attention_flops": curve.attention_flops[i]}
    for prediction in cost.predictions:
        points[prediction.seq_len] = {
            "peak_bytes": prediction.peak, "flops": prediction.flops,
            "attention_score_bytes": prediction.memory.parts.get("attention_scores", 0),
            "attention_flops": prediction.attention_flops}
    return points


def reach_data(report: Report) -> dict[str, Any] | None:
    """The static receptive field and, where the gradient probe ran, its mass profile by
    input offset beside the static support at the probe length."""
    reach = report.reach
    if reach is None:
        return None
    n = reach.target_len
    return {
        "target_len": n,
        "span": reach.span,
        "receptive_field": {axis: field_dict(reach.fields[axis], n) for axis in reach.axes},
        "trusted": reach.trusted if reach.probe is not None else None,
        "probe": _probe_data(reach),
    }


def _probe_data(reach) -> dict[str, Any] | None:  # noqa: ANN001 - a ReachReport
    probe = reach.probe
    if probe is None or not probe.mass_profile:
        return None
    axes = {}
    for axis in reach.axes:
        profile = probe.mass_profile.get(axis)
        origin = probe.aligned_input.get(axis)
        if profile is None:
            continue
        static = (reach.expected_support or {}).get(axis)
        shift = origin or 0
        axes[axis] = {
            "aligned_input": origin,
            "offsets": [i - shift for i in range(len(profile))],
            "mass": list(profile),
            "static_support": _shifted(static, shift),
            "gradient_support": _shifted(probe.support.get(axis), shift),
            "erf": _erf(probe.erf.get(axis), shift),
        }
    return {"probe_len": probe.probe_len, "position": probe.position, "seeds": probe.seeds,
            "dtype": probe.dtype, "axes": axes} if axes else None


def _shifted(support: tuple[int, int] | None, shift: int) -> list[int] | None:
    """A (first, last) support in input positions as offsets; None when empty."""
    if support is None or support[0] < 0:
        return None
    return [support[0] - shift, support[1] - shift]


def _erf(erf: dict[str, Any] | None, shift: int) -> dict[str, Any] | None:
    if not erf:
        return None
    return {"span": erf["span"], "start": erf["start"] - shift, "end": erf["end"] - shift,
            "mass": erf["mass"]}
