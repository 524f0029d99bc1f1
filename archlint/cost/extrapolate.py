"""Extrapolating a loop-over-time model's cost from short fake runs.

Such a model dispatches O(n) ops, so it is run at three short lengths and every number
of the prediction (each stage's peak and its split, the FLOPs) is carried to n by the
polynomial through the three points: exact for costs of degree ≤ 2 in n.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from torch.utils._python_dispatch import TorchDispatchMode

from archlint.cost.memory import MemoryBreakdown, overall

if TYPE_CHECKING:
    from archlint.cost.predict import Prediction


class OpCounter(TorchDispatchMode):
    """Counts the ops a run dispatches: more at a longer length means a loop over time."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001,ANN204
        self.count += 1
        return func(*args, **(kwargs or {}))


def lagrange(points: list[Prediction], seq_len: int, mode: str) -> Prediction:
    """Evaluate, at ``seq_len``, the polynomial through every number of ``points``."""
    xs = [p.seq_len for p in points]

    def at(values: list[int]) -> int:
        total = Fraction(0)
        for i, (x_i, y_i) in enumerate(zip(xs, values)):
            term = Fraction(y_i)
            for j, x_j in enumerate(xs):
                if j != i:
                    term *= Fraction(seq_len - x_j, x_i - x_j)
            total += term
        return max(0, round(total))

    def fit_dict(dicts: list[dict[str, int]]) -> dict[str, int]:
        keys = sorted(set().union(*dicts))
        return {key: at([d.get(key, 0) for d in dicts]) for key in keys}

    phases = {}
    for phase in points[0].phases:
        per_point = [p.phases[phase] for p in points if phase in p.phases]
        if len(per_point) != len(points):
            continue
        parts = fit_dict([b.parts for b in per_point])
        owners = {}
        for category in sorted(set().union(*(b.owners for b in per_point))):
            owners[category] = fit_dict([b.owners.get(category, {}) for b in per_point])
        # the total is fitted on its own: it stays exact if a byte changes category
        first = per_point[0]
        phases[phase] = MemoryBreakdown(peak=at([b.peak for b in per_point]), parts=parts,
                                        phase=first.phase, owners=owners, stage=first.stage)
    from archlint.cost.predict import Prediction

    return Prediction(
        seq_len=seq_len, mode=mode, memory=overall(phases), phases=phases,
        flops_forward=at([p.flops_forward for p in points]),
        flops_backward=at([p.flops_backward for p in points]),
        attention_flops=at([p.attention_flops for p in points]),
        module_flops=fit_dict([p.module_flops for p in points]),
    )
