"""Per-device budgets under a parallel layout: FSDP, tensor and context parallel.

``analyze(graph, settings, cost)`` applies ``--parallel`` (with ``--zero``,
``--checkpoint``, ``--offload``) to the user's model with PyTorch's own distributed
stack on a fake process group (:mod:`.simulate`), per target length, and with a memory
budget answers the largest n that fits per device and the smallest layout that fits
(:mod:`.search`). Where the simulation cannot run the model, the ZeRO/Megatron formula
of :mod:`.formula` stands in, marked as such. See DESIGN.md, "Parallel layouts".
"""

from __future__ import annotations

from typing import Any

from archlint.graph import ModelGraph
from archlint.parallel.layout import Layout, layout_of
from archlint.parallel.plan import make_plan
from archlint.parallel.report import ParallelReport
from archlint.settings import Settings

__all__ = ["analyze", "Layout", "ParallelReport"]


def analyze(graph: ModelGraph, settings: Settings, cost: Any = None) -> ParallelReport | None:
    """The parallel section for ``graph``; None when no layout setting was given."""
    layout = layout_of(settings)
    if layout is None:
        return None
    plan = make_plan(graph, layout, settings.seq_len)
    report = ParallelReport(layout=layout, plan=plan, budget=settings.memory)
    if plan.violations:
        return report
    if settings.mode != "train":
        report.notes.append(f"layouts are simulated for training steps; --mode "
                            f"{settings.mode} is not")
        return report
    if plan.unplanned:
        report.notes.append(
            f"no tensor-parallel plan for {_listed(plan.unplanned)} (no Linear pair that "
            "widens and narrows the width): replicated on every tp rank")
    from archlint.parallel.simulate import Simulator

    with Simulator(graph, settings.batch, settings.dtype, settings.optimizer) as simulator:
        _answer(report, graph, settings, cost, simulator)
    return report


def _answer(report: ParallelReport, graph: ModelGraph, settings: Settings, cost: Any,
            simulator: Any) -> None:
    """The steps at the target lengths, then the budget's answers, into ``report``; one
    ``simulator`` for all, so each layout is built once (:class:`.simulate.Simulator`)."""
    from archlint.parallel.formula import formula_step
    from archlint.parallel.simulate import SimulationError

    layout, plan = report.layout, report.plan
    run = simulator.step
    for seq_len in settings.seq_len:
        try:
            report.steps.append(run(layout, plan, seq_len))
        except SimulationError as error:
            step = formula_step(cost, layout, seq_len, str(error))
            if step is None:
                report.failures[seq_len] = str(error)
            else:
                report.steps.append(step)
    target = report.target
    if settings.memory is None or target is None or target.method != "simulated":
        return
    from archlint.parallel.search import largest_fitting_n, smallest_layout

    def peak_at(seq_len: int) -> int | None:
        if make_plan(graph, layout, (seq_len,)).violations:
            return None
        try:
            return run(layout, plan, seq_len).peak
        except SimulationError:
            return None

    unit = 2 * layout.cp if layout.cp > 1 else 1
    report.fits_up_to = largest_fitting_n(peak_at, settings.memory, target.seq_len,
                                          {target.seq_len: target.peak}, unit)
    if target.peak > settings.memory:
        def peak_of(candidate: Layout) -> int | None:
            try:
                return run(candidate, make_plan(graph, candidate, (target.seq_len,)),
                           target.seq_len).peak
            except SimulationError:
                return None

        def allowed(candidate: Layout) -> bool:
            return not make_plan(graph, candidate, (target.seq_len,)).violations

        report.smallest_layout = smallest_layout(peak_of, settings.memory, layout,
                                                 allowed, target.peak)


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
