"""``archlint advise``: concrete changes ranked by what they do to reach and cost.

``advise(report)`` starts from the model's measured position on the two axes — receptive
field R, dependency path L(span) and serial steps S(n) from the reach analysis, peak
memory and FLOPs at n from the cost analysis, on the run's device budget, dtype and
mode — and evaluates each change with the same analyses (:mod:`.candidates`): re-running
the cost model on a changed copy of the module where the change is mechanical, else
rescaling the existing prediction's per-layer split. Changes the model already has are
listed as such, not suggested; changes that do not fit or do not reach are shown with
their numbers.
"""

from __future__ import annotations

from typing import Any

from archlint.advise import candidates
from archlint.advise.context import Context
from archlint.advise.position import Goals, Standing, position_of
from archlint.advise.ranking import rank
from archlint.advise.report import AdviceReport
from archlint.advise.suggestion import ESTIMATED, RERUN, Suggestion

__all__ = ["advise", "AdviceReport", "Goals", "Standing", "Suggestion", "RERUN", "ESTIMATED"]

#: every change weighed, in the order they are evaluated
CANDIDATES = (
    candidates.fused_attention,
    candidates.bfloat16,
    candidates.checkpointing,
    candidates.sliding_window,
    candidates.linear_attention,
    candidates.dilated_tcn,
    candidates.downsample,
    candidates.smaller_batch,
    candidates.shorter_sequence,
    candidates.parallel_layout,
)


def advise(report: Any) -> AdviceReport:
    """The advice for one analyzed model (a :class:`archlint.report.Report` with its reach
    and cost sections)."""
    from archlint.errors import ArchlintError

    if report.reach is None or report.cost is None or report.cost.target is None:
        failures = "; ".join(report.cost.failures.values()) if report.cost else ""
        raise ArchlintError(f"{report.model.name}: no cost prediction at the target length"
                            + (f" ({failures})" if failures else "") + ": nothing to advise")
    goals = Goals.of(report.settings, report.cost.budget_label())
    ctx = Context(report=report, goals=goals, position=position_of(report, goals))
    found: list[Suggestion] = []
    for candidate in CANDIDATES:
        found.extend(candidate(ctx))
    found.extend(candidates.checkpointing_bf16(ctx, found))
    return AdviceReport(model=report.model, settings=report.settings, goals=goals,
                        position=ctx.position, suggestions=rank(found),
                        already=list(ctx.already), ruled_out=list(ctx.ruled_out),
                        blockers=[f for f in report.findings if f.code in BLOCKERS])


#: findings that stop the model at the target length whatever the budget
BLOCKERS = ("AL106", "AL110")
