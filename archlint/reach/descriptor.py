"""What one tensor knows about the input positions it depends on.

A model's input has one sequence axis (``"n"``), or two for an image (``"h"``, ``"w"``):
each is a *frame*. For every tensor in the graph and every frame, a :class:`FrameReach`
says along which tensor dim the frame runs and which input positions element ``i`` of
that dim depends on: the relative window ``[jump*i + lo, jump*i + hi]`` (``lo = -inf``:
everything before, ``hi = +inf``: everything after) plus an absolute :class:`Span` (a
state that has read positions ``start..end``, e.g. after ``x[:, -1]`` or a sum over the
sequence). Windows are in input positions and independent of the length, so a graph
traced at a short ``trace_len`` extrapolates to any n (Araujo et al., Distill 2019:
``R = 1 + sum (k-1)*dilation*jump``).

Attention scores carry a second, *key* axis (:class:`KeyAxis`) with the band of key
offsets the mask allows; contracting it with the values is where positions mix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

from archlint.reach.hops import INF, HopProfile

Number = float | int | Fraction


@dataclass(frozen=True)
class Expr:
    """A quantity as a function of the length n: ``coef*n + const``, or infinite."""

    coef: Fraction = Fraction(0)
    const: Fraction | int = 0
    infinite: bool = False

    @staticmethod
    def of(value: Number) -> Expr:
        if value == INF:
            return Expr(infinite=True)
        return Expr(Fraction(0), math.ceil(value))

    def at(self, n: int) -> float:
        if self.infinite:
            return INF
        return math.ceil(self.coef * n + self.const)

    @property
    def depends_on_n(self) -> bool:
        return self.infinite is False and self.coef != 0

    def __str__(self) -> str:
        if self.infinite:
            return "inf"
        if self.coef == 0:
            return str(math.ceil(self.const))
        if self.coef == 1:
            head = "n"
        elif self.coef.denominator == 1:
            head = f"{self.coef.numerator}n"
        elif self.coef.numerator == 1:
            head = f"n/{self.coef.denominator}"
        else:
            head = f"{self.coef.numerator}n/{self.coef.denominator}"
        if self.const == 0:
            return head
        const = abs(self.const)
        text = str(const) if Fraction(const).denominator == 1 else f"{float(const):g}"
        return f"{head}{'+' if self.const > 0 else '-'}{text}"


@dataclass(frozen=True)
class Span:
    """Absolute input positions ``start..end`` at the trace length; a bound marked
    ``*_from_end`` moves with the end of the sequence (``x[:, -1]`` reads position n-1)."""

    start: int
    end: int
    start_from_end: bool = False
    end_from_end: bool = False

    def union(self, other: Span | None) -> Span:
        if other is None:
            return self
        first = self if self.start <= other.start else other
        last = self if self.end >= other.end else other
        return Span(first.start, last.end, first.start_from_end, last.end_from_end)

    def width(self, trace_len: int) -> Expr:
        """Number of positions as a function of n."""
        if self.start_from_end == self.end_from_end:
            return Expr.of(self.end - self.start + 1)
        if self.end_from_end:
            return Expr(Fraction(1), self.end - (trace_len - 1) - self.start)
        return Expr.of(self.end - self.start + 1)

    @property
    def is_global(self) -> bool:
        return self.start == 0 and not self.start_from_end and self.end_from_end


@dataclass(frozen=True)
class KeyAxis:
    """The key axis of attention scores: its dim, the window of each key, and the band
    of key offsets ``j - i`` (in grid steps) that the mask lets through."""

    dim: int
    lo: float
    hi: float
    length: int
    band_lo: float = -INF
    band_hi: float = INF


@dataclass(frozen=True)
class FrameReach:
    """Reach of one tensor along one input frame."""

    dim: int | None                        # None: the tensor has no axis for this frame
    window: tuple[float, float] | None     # (lo, hi) relative to jump*i; None if dim is None
    jump: Fraction = Fraction(1)
    span: Span | None = None
    length: int = 0                        # positions along ``dim`` at the trace length
    inner: int = 1                         # elements per position when merged into a dim
    key: KeyAxis | None = None
    reversed: bool = False                 # index i holds grid position length-1-i
    shift: float = 0.0                     # pure offset from pads/slices not yet mixed
    spectrum: tuple[int, int, int] | None = None   # (fft size, kernel taps, time length)
    #: rows picked by a data-dependent index (a mixture of experts' tokens of one
    #: expert): element r reads position ``index[r]`` through ``window``; names the
    #: index (see :mod:`archlint.reach.routing`)
    routed: str | None = None
    left: HopProfile = field(default_factory=HopProfile)
    right: HopProfile = field(default_factory=HopProfile)

    @staticmethod
    def identity(dim: int, length: int) -> FrameReach:
        return FrameReach(dim, (0.0, 0.0), Fraction(1), None, length)

    def moved(self, dim: int | None, key_dim: int | None = None) -> FrameReach:
        key = self.key if self.key is None or key_dim is None else replace(self.key, dim=key_dim)
        if key is not None and key_dim is None:
            key = None
        return replace(self, dim=dim, key=key)

    def support_at(self, index: int, trace_len: int) -> tuple[float, float] | None:
        """Concrete input positions [a, b] that element ``index`` reads (at trace); a
        routed element may read any position."""
        if self.routed is not None:
            return 0.0, trace_len - 1.0
        parts = []
        if self.window is not None and self.dim is not None:
            grid = self.length - 1 - index if self.reversed else index
            lo, hi = self.window
            parts.append((max(0.0, float(self.jump * grid + lo) if lo > -INF else 0.0),
                          min(trace_len - 1.0,
                              float(self.jump * grid + hi) if hi < INF else trace_len - 1.0)))
        if self.span is not None:
            parts.append((float(self.span.start), float(self.span.end)))
        if not parts:
            return None
        return min(p[0] for p in parts), max(p[1] for p in parts)

    def collapse(self, index: int | None, trace_len: int, from_end: bool = False) -> Span:
        """The absolute span read by element ``index``, or by all elements (None): what a
        ``select`` or a reduction over the axis leaves behind."""
        lo, hi = self.window or (0.0, 0.0)
        if index is None:
            first = self.support_at(0, trace_len) if self.dim is not None else None
            last = self.support_at(self.length - 1, trace_len) if self.dim is not None else None
            a = 0.0 if first is None else min(first[0], last[0])
            b = trace_len - 1.0 if last is None else max(first[1], last[1])
            span = Span(math.floor(a), math.ceil(b), False, hi == INF or b >= trace_len - 1)
            return span.union(self.span) if self.span else span
        found = self.support_at(index, trace_len)
        a, b = found if found is not None else (0.0, trace_len - 1.0)
        return Span(math.floor(a), math.ceil(b), from_end and lo > -INF, from_end or hi == INF)


@dataclass(frozen=True)
class Serial:
    """Ordered steps on the critical path: ``per_n`` recurrences over all n positions,
    ``loop_calls`` state updates of an unrolled loop (one per traced position),
    ``steps`` parallel mixing layers."""

    per_n: int = 0
    loop_calls: int = 0
    steps: int = 0

    def plus(self, per_n: int = 0, loop_calls: int = 0, steps: int = 0) -> Serial:
        return Serial(self.per_n + per_n, self.loop_calls + loop_calls, self.steps + steps)

    def key(self, trace_len: int) -> tuple[float, int]:
        return (self.per_n + self.loop_calls / trace_len, self.steps)

    def expr(self, trace_len: int) -> Expr:
        loops = round(self.loop_calls / trace_len)
        return Expr(Fraction(self.per_n + loops), self.steps)


def longest(serials: list[Serial], trace_len: int) -> Serial:
    return max(serials, key=lambda s: s.key(trace_len), default=Serial())


@dataclass(frozen=True)
class TensorReach:
    """Everything the reach pass knows about one tensor."""

    frames: dict[str, FrameReach]
    positional: bool = False        # carries information about absolute/relative position
    serial: Serial = Serial()
    picked: int | None = None       # the one position picked from a sequence (x[:, t]),
                                    # not yet merged into a loop-carried state
    step: int | None = None         # the latest position merged into this state

    def frame_at(self, dim: int) -> list[tuple[str, FrameReach]]:
        return [(name, f) for name, f in self.frames.items() if f.dim == dim]

    def with_frames(self, frames: dict[str, FrameReach], **changes) -> TensorReach:
        return replace(self, frames=frames, **changes)

    @property
    def has_axis(self) -> bool:
        return any(f.dim is not None for f in self.frames.values())
