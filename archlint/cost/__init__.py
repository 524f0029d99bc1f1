"""Budget: peak memory and FLOPs of one step at any sequence length, without allocating.

``analyze(graph, settings)`` predicts every ``--seq-len`` on fake tensors
(:mod:`.predict`), draws the curve up to the target (:mod:`.curves`) and, with a memory
budget, finds the largest n that fits. See DESIGN.md, "The cost model".
"""

from __future__ import annotations

from archlint.cost.curves import Curve, crossover, grid, growth_exponent, largest_fitting
from archlint.cost.predict import CostError, CostModel, Prediction
from archlint.cost.report import CostReport
from archlint.errors import ArchlintError
from archlint.graph import ModelGraph
from archlint.settings import Settings

__all__ = ["analyze", "CostModel", "CostReport", "Prediction"]


def analyze(graph: ModelGraph, settings: Settings, model: CostModel | None = None) -> CostReport:
    """The cost section of a report for ``graph`` under ``settings``."""
    model = model or CostModel(graph, settings)
    report = CostReport(mode=settings.mode, dtype=settings.dtype, batch=settings.batch,
                        optimizer=settings.optimizer, budget=settings.memory,
                        device=settings.device, predictions=[],
                        cuda_context=settings.cuda_context)
    for seq_len in settings.seq_len:
        try:
            report.predictions.append(model.predict(seq_len))
        except CostError as error:
            report.failures[seq_len] = str(error)
    methods = sorted({p.method for p in report.predictions if p.method != "fake tensors"})
    report.notes.extend(methods)
    if model.routing is not None and report.predictions:
        report.notes.append(model.routing.note())
    for seq_len in settings.seq_len:
        if model.pairwise_rule(seq_len).ambiguous:
            report.notes.append(
                f"n={seq_len} equals a model dimension: attention scores and FLOPs are "
                "told apart only inside classified attention layers")
    if report.predictions:
        report.curve = build_curve(model, report.target.seq_len, settings.memory)
    return report


def build_curve(model: CostModel, target: int, budget: int | None) -> Curve:
    """Predictions on the grid up to ``target``; the budget search when there is one."""
    points = []
    for seq_len in grid(target, model.graph.input_spec.min_len, model.model_dims):
        try:
            points.append(model.predict(seq_len))
        except CostError:
            continue
    lengths = tuple(p.seq_len for p in points)
    peaks = tuple(p.peak for p in points)
    flops = tuple(p.flops for p in points)
    curve = Curve(
        lengths=lengths, peaks=peaks, flops=flops,
        attention_bytes=tuple(p.memory.parts.get("attention_scores", 0) for p in points),
        attention_flops=tuple(p.attention_flops for p in points),
        memory_exponent=growth_exponent(lengths, peaks),
        flops_exponent=growth_exponent(lengths, flops),
        crossover=crossover(lengths, tuple(p.attention_flops for p in points), flops),
    )
    if budget is None:
        return curve
    known = {p.seq_len: _stages(p) for p in points}
    fits, exact = largest_fitting(lambda n: _stages_or_none(model, n), budget, known)
    return Curve(**{**curve.__dict__, "fits_up_to": fits, "fits_exact": exact})


def _stages(prediction: Prediction) -> dict[str, int]:
    return {stage: breakdown.peak for stage, breakdown in prediction.phases.items()}


def _stages_or_none(model: CostModel, seq_len: int) -> dict[str, int] | None:
    """A probe of the budget search; a length that fails or overflows does not fit."""
    try:
        return _stages(model.predict(seq_len))
    except (CostError, ArchlintError):
        return None
