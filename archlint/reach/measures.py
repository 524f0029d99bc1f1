"""The reported quantities, read off one frame's reach.

- receptive field R: how many input positions one output position can read, as a
  function of n (``17``, ``n`` for a causal prefix or global mixing);
- causality by index (output t is aligned with input t) and by end (when the output is
  longer or shorter than the input, its last position aligned with the input's last:
  the way ``out[..., -n:]`` lines it up with targets);
- dependency path L(d) from the hop profiles, and the effective stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from archlint.reach.descriptor import Expr, FrameReach
from archlint.reach.hops import INF


@dataclass(frozen=True)
class Field:
    """A receptive field: its size as a function of n, its shape, and its reach to
    each side of the output's own position (``inf`` = unbounded)."""

    size: Expr
    shape: str            # "bounded" | "prefix" | "suffix" | "global"
    left: float
    right: float

    def describe(self) -> str:
        if self.shape == "bounded":
            return str(self.size)
        label = {"prefix": "causal prefix", "suffix": "suffix", "global": "all positions"}
        return f"{self.size} ({label[self.shape]})"


def receptive_field(frame: FrameReach, trace_len: int) -> Field:
    """R of one output position (the largest over positions) along ``frame``."""
    n_expr = Expr(Fraction(1), 0)
    if frame.dim is None or frame.window is None:
        span = frame.span
        if span is None:
            return Field(Expr.of(0), "bounded", 0.0, 0.0)
        width = span.width(trace_len)
        if width.depends_on_n:
            return Field(width, "global" if span.is_global else "prefix", INF, INF)
        return Field(width, "bounded", float(width.const - 1), 0.0)
    lo, hi = frame.window
    if lo == -INF or hi == INF:
        shape = "global" if lo == -INF and hi == INF else "prefix" if lo == -INF else "suffix"
        return Field(n_expr, shape, -lo if lo == -INF else max(0.0, -lo), hi)
    width = math.ceil(hi - lo) + 1
    if frame.span is not None:
        extra = frame.span.width(trace_len)
        if extra.depends_on_n:
            return Field(n_expr, "global" if frame.span.is_global else "prefix", INF, hi)
        width += int(extra.const)
    return Field(Expr.of(width), "bounded", max(0.0, -lo), max(0.0, hi))


@dataclass(frozen=True)
class Causality:
    """Whether an output reads inputs after its own position."""

    by_index: bool
    by_end: bool
    ahead_by_index: float      # farthest position read ahead of the output (0 if causal)
    ahead_by_end: float
    length_change: Expr        # output length minus input length, as a function of n

    @property
    def causal(self) -> bool:
        return self.by_index and self.by_end


def causality(frame: FrameReach, trace_len: int) -> Causality | None:
    """Causality of every output position, from the window in input positions (never
    clipped at the trace length, so a look-ahead of 510 reads 510 whatever was traced)."""
    if frame.dim is None or frame.window is None:
        return None
    tail = (trace_len - 1) - frame.jump * (frame.length - 1)      # end alignment offset
    if frame.reversed:
        return _causality_by_position(frame, trace_len, tail)
    hi = frame.window[1]
    if frame.span is not None:
        hi = max(hi, INF if frame.span.end_from_end else float(frame.span.end))
    ahead_index = max(0.0, float(hi))
    ahead_end = max(0.0, float(hi - tail)) if hi < INF else INF
    return Causality(ahead_index <= 0, ahead_end <= 0, ahead_index, ahead_end,
                     output_length(frame, trace_len))


def _causality_by_position(frame: FrameReach, trace_len: int, tail) -> Causality:
    """A reversed axis (flipped, not yet flipped back): each position's own support."""
    ahead_index = ahead_end = 0.0
    for index in range(frame.length):
        support = frame.support_at(index, trace_len)
        if support is not None:
            ahead_index = max(ahead_index, support[1] - float(frame.jump * index))
            ahead_end = max(ahead_end, support[1] - float(frame.jump * index + tail))
    if frame.window[1] == INF:
        ahead_index = ahead_end = INF
    return Causality(ahead_index <= 0, ahead_end <= 0, ahead_index, ahead_end,
                     output_length(frame, trace_len))


def output_length(frame: FrameReach, trace_len: int) -> Expr:
    """Output length as a function of n (``n``, ``n+14``, ``n/4``)."""
    coef = Fraction(1) / frame.jump
    return Expr(coef, round(frame.length - coef * trace_len))


def dependency_path(frame: FrameReach, distance: float) -> float:
    """L(d): fewest mixing hops between positions ``distance`` apart (either direction)."""
    return min(frame.left.hops_for(distance), frame.right.hops_for(distance))


def longest_path(frame: FrameReach, n: int) -> Expr:
    """L(n-1) as a function of n: a constant, ``n-1`` (one hop per position), or inf."""
    best: tuple[float, Expr] | None = None
    for profile in (frame.left, frame.right):
        hops = profile.hops_for(n - 1)
        if hops == INF:
            continue
        last = len(profile.table) - 1
        if profile.slope > 0 and hops > last:
            per = 1 / Fraction(profile.slope).limit_denominator(1024)
            expr = Expr(per, last - (1 + Fraction(profile.table[-1])) * per)
        else:
            expr = Expr.of(hops)
        if best is None or hops < best[0]:
            best = (hops, expr)
    return best[1] if best else Expr(infinite=True)


def layers_to_cover(span: int, kernel: int, dilation: int = 1, jump: int = 1,
                    start: int = 1) -> int:
    """Conv layers of kernel ``k`` needed so that R >= span (R grows by (k-1)*d*jump per
    layer from ``start``): d=512, k=3 -> 256 (selection guide)."""
    step = (kernel - 1) * dilation * jump
    if span <= start:
        return 0
    return math.ceil((span - start) / step)


def doubling_dilations(span: int, kernel: int, start: int = 1) -> list[int]:
    """Dilations 1, 2, 4, ... of kernel-``k`` layers until R = 1 + (k-1)(2^L - 1) >= span."""
    dilations, reach = [], start
    while reach < span:
        dilations.append(2 ** len(dilations))
        reach += (kernel - 1) * dilations[-1]
    return dilations
