"""Transfer functions that build a sequence axis from pieces: ``cat`` and ``stack``.

Each output position's concrete support is read at the trace length and a window fitted
to all of them; a bound that sticks to the sequence start (end) at every position is
unbounded. That is how an unrolled loop over time becomes a sequence again: ``h_t``
depends on ``x_0..x_t`` for every t, a causal prefix reached one step per position (a
recurrence), while a shifted concatenation (a prepended token) just moves the window.
"""

from __future__ import annotations

from fractions import Fraction

from torch.fx import Node

from archlint.reach.descriptor import FrameReach, TensorReach
from archlint.reach.hops import INF
from archlint.reach.layout import _remap
from archlint.reach.transfer import (
    TransferContext,
    arg,
    aten,
    longest,
    merge,
    norm_dim,
    register_transfer,
    union,
)


@register_transfer(aten.cat, aten.concat, aten.concatenate)
def cat(node: Node, ctx: TransferContext):
    parts = list(node.args[0])
    shape = ctx.out_shape()
    dim = norm_dim(arg(node, 1, "dim", 0), len(shape))
    along = _frames_along(parts, dim, ctx)
    if not along:
        return union(ctx, parts, shape)
    return _rebuild(parts, dim, along, ctx, new_axis=False)


@register_transfer(aten.stack)
def stack(node: Node, ctx: TransferContext):
    parts = list(node.args[0])
    shape = ctx.out_shape()
    dim = norm_dim(arg(node, 1, "dim", 0), len(shape))
    names = set()
    for part in parts:
        reach = ctx.reach(part)
        if reach is not None:
            names |= {name for name, f in reach.frames.items() if f.dim is None}
    if not names or len(parts) < 2:
        moved = [_remap(ctx.reach(p), lambda d: d + (d >= dim)) if ctx.reach(p) else None
                 for p in parts]
        return _union_of(moved, ctx)
    return _rebuild(parts, dim, names, ctx, new_axis=True)


def _frames_along(parts, dim, ctx) -> set[str]:
    names = set()
    for part in parts:
        reach = ctx.reach(part)
        for name, frame in (reach.frames.items() if reach else ()):
            if frame.dim == dim:
                names.add(name)
    return names


def _union_of(reaches, ctx):
    found = [r for r in reaches if r is not None]
    if not found:
        return None
    frames: dict[str, FrameReach] = {}
    for reach in found:
        for name, frame in reach.frames.items():
            frames[name] = merge(frames[name], frame) if name in frames else frame
    return TensorReach(frames, any(r.positional for r in found),
                       longest([r.serial for r in found], ctx.trace_len))


def _rebuild(parts, dim, names, ctx, new_axis: bool) -> TensorReach:
    """A sequence axis assembled from pieces: fit a window to what each position reads."""
    trace_len = ctx.trace_len
    pieces = []
    for part in parts:
        reach = ctx.reach(part)
        width = 1 if new_axis else ctx.shape(part)[dim]
        pieces.append((reach, width))
    others = [r for r, _ in pieces if r is not None]
    base = _union_of([_remap(r, lambda d: d + (d >= dim)) if new_axis else r for r in others],
                     ctx)
    frames = dict(base.frames)
    for name in names:
        supports, jumps, hops_l, hops_r, looped = [], set(), [], [], False
        for reach, width in pieces:
            frame = reach.frames.get(name) if reach else None
            for k in range(width):
                if frame is None:
                    supports.append(None)
                    continue
                index = None if new_axis or frame.dim is None else k
                supports.append(frame.support_at(index, trace_len) if index is not None
                                else _span_support(frame))
            if frame is not None:
                jumps.add(frame.jump)
                hops_l.append(frame.left)
                hops_r.append(frame.right)
                looped |= reach.serial.loop_calls > 0
        jump = max(jumps) if len(jumps) == 1 or not new_axis else Fraction(1)
        lo, hi = _fit(supports, jump, trace_len)
        left, right = hops_l[0], hops_r[0]
        for extra in hops_l[1:]:
            left = left.union(extra)
        for extra in hops_r[1:]:
            right = right.union(extra)
        if new_axis:
            left = left.recur(float(jump)) if lo == -INF and looped else left.step(max(0, -lo))
            right = right.recur(float(jump)) if hi == INF and looped else right.step(max(0, hi))
            if looped:
                ctx.mix("recurrence", name, max(0.0, -lo), max(0.0, hi), loop=True)
        frames[name] = FrameReach(dim, (lo, hi), jump, length=len(supports), left=left,
                                  right=right)
    return TensorReach(frames, True, base.serial)


def _span_support(frame: FrameReach):
    if frame.span is None:
        return None
    return float(frame.span.start), float(frame.span.end)


def _fit(supports, jump, trace_len) -> tuple[float, float]:
    """Smallest relative window ``[jump*k + lo, jump*k + hi]`` covering every support;
    a bound that sticks to the sequence start (end) at every position is unbounded."""
    known = [(k, s) for k, s in enumerate(supports) if s is not None]
    if not known:
        return 0.0, 0.0
    starts = [(k, a) for k, (a, _) in known if a > 0]
    ends = [(k, b) for k, (_, b) in known if b < trace_len - 1]
    lo = -INF if not starts or len(starts) < len(known) // 2 else \
        min(a - jump * k for k, a in starts)
    hi = INF if not ends or len(ends) < len(known) // 2 else \
        max(b - jump * k for k, b in ends)
    return float(lo), float(hi)
