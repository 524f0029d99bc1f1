"""Cost as a function of n: a grid up to the target, growth orders, budget, crossover.

Every point is a prediction (fake tensors), never an allocation at n. Between points:

- the growth exponent is the local slope, on a log-log scale, of the n-dependent part
  of the quadratic through the top three grid points;
- the largest n within a memory budget is found by bisection on predictions, each probe
  placed where the quadratic through the three nearest known points meets the budget
  (memory is piecewise quadratic in n, so this usually lands in two or three probes);
- the crossover is where the attention FLOPs (the n² part) overtake all other FLOPs
  of the step, solved on the polynomials through the top grid points.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from archlint.units import MAX_SEQ_LEN

#: grid points below the target: target/2, target/4, ... (at least this short)
GRID_POINTS = 4
SHORTEST = 16
#: probes the budget search may spend before settling for its bracket
MAX_PROBES = 24


@dataclass(frozen=True)
class Curve:
    """Predicted cost on a grid of lengths ending at the target."""

    lengths: tuple[int, ...]
    peaks: tuple[int, ...]
    flops: tuple[int, ...]
    attention_bytes: tuple[int, ...]
    attention_flops: tuple[int, ...]
    memory_exponent: float | None
    flops_exponent: float | None
    fits_up_to: int | None = None       # None: no budget; 0: not even the shortest fits
    fits_exact: bool = True             # False: the search stopped at a bracket
    crossover: int | None = None        # None: attention never overtakes (or is absent)

    @property
    def memory_order(self) -> str:
        return order_label(self.memory_exponent)

    @property
    def flops_order(self) -> str:
        return order_label(self.flops_exponent)

    def to_dict(self) -> dict:
        return {
            "lengths": list(self.lengths), "peak_bytes": list(self.peaks),
            "flops": list(self.flops), "attention_score_bytes": list(self.attention_bytes),
            "attention_flops": list(self.attention_flops),
            "memory_exponent": _rounded(self.memory_exponent),
            "flops_exponent": _rounded(self.flops_exponent),
            "memory_order": self.memory_order, "flops_order": self.flops_order,
            "fits_up_to": self.fits_up_to, "fits_exact": self.fits_exact,
            "crossover": self.crossover,
        }


def grid(target: int, shortest: int = SHORTEST,
         avoid: frozenset[int] = frozenset()) -> tuple[int, ...]:
    """target, target/2, ... down to ``shortest`` (at most :data:`GRID_POINTS`).

    A point equal to a model dimension (``avoid``) moves by one, where attention scores
    can be told from activations (see :class:`~archlint.cost.memory.PairwiseRule`).
    """
    points = {target}
    length = target
    while len(points) < GRID_POINTS and length // 2 >= max(shortest, SHORTEST):
        length //= 2
        points.add(length + 1 if length in avoid else length)
    return tuple(sorted(points))


def growth_exponent(lengths: tuple[int, ...], values: tuple[int, ...]) -> float | None:
    """Local exponent of the n-dependent part at the last point.

    Through the top three points c(n) = c0 + c1·n + c2·n²; the exponent of c − c0 at n
    is (c1 + 2·c2·n) / (c1 + c2·n): 1 for a line, 2 for a pure square.
    """
    if len(lengths) < 3:
        return None
    curve = _quadratic(lengths[-3:], values[-3:])
    if curve is None:
        return None
    _, c1, c2 = curve
    n = lengths[-1]
    growth = c1 + c2 * n
    if abs(growth * n) < 0.5:                  # less than a byte or a FLOP over the range
        return 0.0
    if growth <= 0:
        return None
    return (c1 + 2 * c2 * n) / growth


def order_label(exponent: float | None) -> str:
    if exponent is None:
        return "?"
    if exponent < 0.5:
        return "O(1)"
    if exponent < 1.5:
        return "O(n)"
    if exponent < 2.5:
        return "O(n²)"
    return f"O(n^{exponent:.1f})"


def largest_fitting(stages_at: Callable[[int], dict[str, int] | None], budget: int,
                    known: dict[int, dict[str, int]]) -> tuple[int, bool]:
    """Largest n whose peak fits ``budget``, as ``(n, exact)``; 0 when n=1 does not fit.

    ``stages_at(n)`` gives the peak of each stage of the step (their maximum is the
    step's peak), or None where the model cannot run (counted as not fitting); ``known``
    seeds the search with predictions already made. Each stage's peak is a polynomial
    in n, so the guess is the first length where any stage's quadratic through the
    three nearest known points meets the budget; each round probes the guess and its
    neighbour, so an exact guess closes the bracket at once; rounds alternate with
    bisection so a wrong guess cannot stall the search.
    """
    points = {n: stages for n, stages in known.items()}

    def fits(n: int) -> bool:
        if n not in points:
            points[n] = stages_at(n) or {_FAILED: budget + 1}
        return max(points[n].values(), default=0) <= budget

    lo = max((n for n in points if fits(n)), default=0)
    if lo == 0 and not fits(1):
        return 0, True
    lo = max(lo, 1)
    hi = min((n for n in points if not fits(n) and n > lo), default=MAX_SEQ_LEN + 1)
    for round_ in range(MAX_PROBES // 2):
        if hi - lo <= 1:
            return lo, True
        guess = _guess(points, budget, lo) if round_ % 2 == 0 else None
        if guess is None:            # every other round bisects (geometrically when wide)
            guess = 8 * lo if hi > MAX_SEQ_LEN else \
                math.isqrt(lo * hi) if hi > 16 * lo else (lo + hi) // 2
        guess = min(max(guess, lo + 1), hi - 1)
        if fits(guess):
            lo = guess
            if guess + 1 < hi and not fits(guess + 1):
                hi = guess + 1
            elif guess + 1 < hi:
                lo = guess + 1
        else:
            hi = guess
            if _FAILED in points[guess]:
                continue                          # the model cannot run there: bisect
            if guess - 1 > lo and fits(guess - 1):
                lo = guess - 1
            elif guess - 1 > lo:
                hi = guess - 1
    return lo, hi - lo <= 1


_FAILED = "<not run>"


def _guess(points: dict[int, dict[str, int]], budget: int, lo: int) -> int | None:
    """First n above ``lo`` where a stage's quadratic (nearest three points) meets budget."""
    usable = sorted(n for n in points if n >= 1 and _FAILED not in points[n])
    if len(usable) < 3:
        return None
    nearest = sorted(sorted(usable, key=lambda n: (abs(n - lo), n))[:3])
    roots = []
    for stage in set.intersection(*(set(points[n]) for n in nearest)):
        curve = _quadratic(tuple(nearest), tuple(points[n][stage] for n in nearest))
        root = None if curve is None else _root(curve, budget)
        if root is not None and root > lo:
            roots.append(min(root, 2.0 * MAX_SEQ_LEN))
    return int(math.floor(min(roots))) if roots else None


def _root(curve: tuple[float, float, float], budget: int) -> float | None:
    """Smallest positive n with c0 + c1·n + c2·n² = budget."""
    c0, c1, c2 = curve[0] - budget, curve[1], curve[2]
    if abs(c2) < 1e-12:
        return -c0 / c1 if c1 > 1e-12 and -c0 / c1 > 0 else None
    discriminant = c1 * c1 - 4 * c2 * c0
    if discriminant < 0:
        return None
    roots = [(-c1 + sign * math.sqrt(discriminant)) / (2 * c2) for sign in (1, -1)]
    positive = [r for r in roots if r > 0 and math.isfinite(r)]
    return min(positive) if positive else None


def crossover(lengths: tuple[int, ...], attention: tuple[int, ...],
              total: tuple[int, ...]) -> int | None:
    """Smallest n where attention FLOPs reach all other FLOPs, from the top grid points."""
    if len(lengths) < 3 or not any(attention):
        return None
    xs = lengths[-3:]
    a = _quadratic(xs, attention[-3:])
    o = _quadratic(xs, tuple(t - s for t, s in zip(total[-3:], attention[-3:])))
    if a is None or o is None:
        return None
    # a(n) - o(n) = 0 with a, o as (c0, c1, c2)
    c0, c1, c2 = (a[i] - o[i] for i in range(3))
    if c2 <= 0:
        return None
    discriminant = c1 * c1 - 4 * c2 * c0
    if discriminant < 0:
        return None
    root = (-c1 + math.sqrt(discriminant)) / (2 * c2)
    return max(1, math.ceil(root)) if root > 0 else None


def _quadratic(xs: tuple[int, ...], ys: tuple[int, ...]) -> tuple[float, float, float] | None:
    (x1, x2, x3), (y1, y2, y3) = xs, ys
    denominator = (x1 - x2) * (x1 - x3) * (x2 - x3)
    if denominator == 0:
        return None
    c2 = (x3 * (y2 - y1) + x2 * (y1 - y3) + x1 * (y3 - y2)) / denominator
    c1 = (x3 * x3 * (y1 - y2) + x2 * x2 * (y3 - y1) + x1 * x1 * (y2 - y3)) / denominator
    c0 = y1 - c2 * x1 * x1 - c1 * x1
    return c0, c1, c2


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
