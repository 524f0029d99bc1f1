"""Dependency-path profiles: how far information can travel in a given number of hops.

A :class:`HopProfile` is the function ``f(h)`` = the farthest distance (in input
positions, in one direction) over which an input position can reach an output position
using at most ``h`` sequence-mixing hops. It is stored as a table ``f(0..K)`` and a tail
slope: beyond the table ``f`` grows by ``slope`` per extra hop (a recurrence moves one
position per step, unbounded). Composition rules:

- a mixing op with one-hop reach ``r`` (a conv, a window, an attention): ``f'(h) =
  max(f(h), f(h-1) + r)``; global attention has ``r = inf``;
- a recurrence moving ``s`` positions per step: ``f'(h) = max_k f(h-k) + k*s``;
- parallel branches (a residual sum): pointwise ``max``.

The dependency path ``L(d)`` is the smallest ``h`` with ``f(h) >= d`` (Vaswani et al.
2017, table 1: RNN ``d``, CNN ``ceil(d/r)``, attention 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INF = math.inf

#: A profile longer than this many hops is cut (a model this deep is not a thing we
#: meet; the cut keeps pathological graphs linear).
MAX_HOPS = 4096


@dataclass(frozen=True)
class HopProfile:
    """``table[h]``: farthest distance reached with ``h`` hops; then ``slope`` per hop."""

    table: tuple[float, ...] = (0.0,)
    slope: float = 0.0

    def at(self, hops: int) -> float:
        if hops < len(self.table):
            return self.table[hops]
        last = self.table[-1]
        if last == INF:
            return INF
        return last + self.slope * (hops - len(self.table) + 1)

    def step(self, reach: float) -> HopProfile:
        """After one more mixing op that moves information up to ``reach`` positions."""
        if reach <= 0:
            return self
        size = min(len(self.table) + 1, MAX_HOPS)
        table = [self.table[0]] + [max(self.at(h), self.at(h - 1) + reach)
                                   for h in range(1, size)]
        return HopProfile._make(table, self.slope)

    def recur(self, per_step: float) -> HopProfile:
        """After a recurrence that moves ``per_step`` positions per serial step."""
        if per_step <= 0:
            return self
        best = -INF
        table = []
        for h in range(len(self.table)):
            best = max(best, self.table[h] - h * per_step)
            table.append(best + h * per_step)
        return HopProfile._make(table, max(self.slope, per_step))

    def union(self, other: HopProfile) -> HopProfile:
        """Pointwise maximum: the better of two parallel paths."""
        if other == self:
            return self
        size = max(len(self.table), len(other.table))
        slope = max(self.slope, other.slope)
        fast, slow = (self, other) if self.slope >= other.slope else (other, self)
        if fast.slope > slow.slope:
            gap = slow.at(size - 1) - fast.at(size - 1)
            if 0 < gap < INF:
                size += math.ceil(gap / (fast.slope - slow.slope))
        size = min(size, MAX_HOPS)
        table = [max(self.at(h), other.at(h)) for h in range(size)]
        return HopProfile._make(table, slope)

    def hops_for(self, distance: float) -> float:
        """L(d): fewest hops reaching ``distance`` positions; ``inf`` when unreachable."""
        if distance <= 0:
            return 0
        for h, reach in enumerate(self.table):
            if reach >= distance:
                return h
        last = self.table[-1]
        if self.slope <= 0 or last == INF:
            return INF
        return len(self.table) - 1 + math.ceil((distance - last) / self.slope)

    @property
    def unbounded(self) -> bool:
        return self.table[-1] == INF or self.slope > 0

    @staticmethod
    def _make(table: list[float], slope: float) -> HopProfile:
        if INF in table:
            table = table[: table.index(INF) + 1]
        elif slope == 0:
            while len(table) > 1 and table[-1] == table[-2]:
                table.pop()
        return HopProfile(tuple(float(v) for v in table), float(slope))
