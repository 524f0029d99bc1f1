"""Transfer functions of ops that move data without mixing positions.

Views, transposes and reshapes move the frame to another dim (found from the element
strides, not from sizes, so ``d == n`` is harmless); slicing shifts and strides the
window; ``select`` and ``x[:, t]`` collapse the axis into an absolute span
(:mod:`archlint.reach.assemble` builds axes back up).
"""

from __future__ import annotations

import math
from dataclasses import replace

from torch.fx import Node

from archlint.reach.descriptor import FrameReach, TensorReach
from archlint.reach.hops import INF
from archlint.reach.transfer import (
    TransferContext,
    arg,
    aten,
    norm_dim,
    register_transfer,
)


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


def _remap(reach: TensorReach, mapping, trace_len: int = 0) -> TensorReach:
    """Move every frame (and key axis) dim through ``mapping(dim) -> dim | None``; a
    frame whose dim disappears (a squeezed length-1 axis) keeps what it read as a span."""
    frames = {}
    for name, frame in reach.frames.items():
        dim = None if frame.dim is None else mapping(frame.dim)
        key = frame.key
        if key is not None:
            key_dim = mapping(key.dim)
            key = None if key_dim is None else replace(key, dim=key_dim)
        if dim is None and frame.dim is not None:
            index = 0 if frame.length == 1 else None
            span = frame.collapse(index, max(trace_len, frame.length))
            frames[name] = replace(frame, dim=None, window=None, key=None,
                                   span=span.union(frame.span) if frame.span else span)
        else:
            frames[name] = replace(frame, dim=dim, key=key)
    return reach.with_frames(frames)


@register_transfer(aten.clone, aten.contiguous, aten.detach, aten.alias, aten.lift_fresh_copy,
                   aten._to_copy, aten.to, aten.type_as, aten.dropout, aten.feature_dropout,
                   aten.alpha_dropout, aten.copy, aten.bernoulli, aten._assert_tensor_metadata,
                   aten.positive, aten.resolve_conj, aten.resolve_neg)
def identity(node: Node, ctx: TransferContext):
    return ctx.reach(node.args[0])


@register_transfer(aten.native_dropout)
def native_dropout(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    return (reach, reach)


@register_transfer(aten.transpose, aten.swapaxes, aten.swapdims)
def transpose(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    a, b = norm_dim(node.args[1], rank), norm_dim(node.args[2], rank)
    return _remap(reach, lambda d: b if d == a else a if d == b else d)


@register_transfer(aten.t, aten.numpy_T)
def matrix_t(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    return _remap(reach, lambda d: rank - 1 - d if rank == 2 else d)


@register_transfer(aten.permute)
def permute(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    order = [norm_dim(d, rank) for d in node.args[1]]
    return _remap(reach, order.index)


@register_transfer(aten.unsqueeze)
def unsqueeze(node: Node, ctx: TransferContext):
    rank = len(ctx.out_shape())
    where = norm_dim(node.args[1], rank)
    return _remap(ctx.reach(node.args[0]), lambda d: d + 1 if d >= where else d)


@register_transfer(aten.squeeze)
def squeeze(node: Node, ctx: TransferContext):
    shape = ctx.shape(node.args[0])
    dims = arg(node, 1, "dim")
    if dims is None:
        dims = [i for i, s in enumerate(shape) if s == 1]
    dims = [norm_dim(d, len(shape)) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    dims = [d for d in dims if shape[d] == 1]
    return _remap(ctx.reach(node.args[0]),
                  lambda d: None if d in dims else d - sum(1 for x in dims if x < d),
                  ctx.trace_len)


@register_transfer(aten.expand, aten.expand_as, aten.broadcast_to)
def expand(node: Node, ctx: TransferContext):
    offset = len(ctx.out_shape()) - len(ctx.shape(node.args[0]))
    return _remap(ctx.reach(node.args[0]), lambda d: d + offset)


@register_transfer(aten.view, aten.reshape, aten._unsafe_view, aten.flatten, aten.unflatten,
                   aten.view_as, aten.reshape_as, aten._reshape_alias)
def reshape(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    in_shape, out_shape = ctx.shape(node.args[0]), ctx.out_shape()
    frames = {}
    for name, frame in reach.frames.items():
        frames[name] = relocate(frame, in_shape, out_shape, ctx)
    return reach.with_frames(frames)


def relocate(frame: FrameReach, in_shape, out_shape, ctx: TransferContext) -> FrameReach:
    """Where a frame lands after a reshape, from flat element strides."""
    if frame.dim is None:
        return frame
    key = frame.key
    if key is not None:
        found = _within(_prod(in_shape[key.dim + 1:]), key.length, out_shape)
        key = None if found is None else replace(key, dim=found[0])
    stride = frame.inner * _prod(in_shape[frame.dim + 1:])
    found = _within(stride, frame.length, out_shape)
    if found is not None:
        dim, inner = found
        if inner > 1 and frame.jump >= inner and frame.window is not None:
            # chunks merged back into a sequence: element i belongs to chunk i // inner
            fine = frame.jump / inner
            lo, hi = frame.window
            return replace(frame, dim=dim, inner=1, key=key, jump=fine,
                           length=frame.length * inner,
                           window=(lo - float(fine * (inner - 1)), hi))
        return replace(frame, dim=dim, inner=inner, key=key)
    for j in range(len(out_shape)):
        suffix = _prod(out_shape[j + 1:])
        if stride < suffix < stride * frame.length and suffix % stride == 0:
            chunk = suffix // stride
            lo, hi = frame.window
            ctx.note(f"a reshape splits the sequence into chunks of {chunk}: "
                     "the reach is widened to whole chunks")
            return replace(frame, dim=j, inner=1, length=math.ceil(frame.length / chunk),
                           jump=frame.jump * chunk, window=(lo, hi + frame.jump * (chunk - 1)),
                           key=None)
    ctx.note("a reshape scatters the sequence axis: treated as global")
    return replace(frame, dim=None, window=None, key=None,
                   span=frame.collapse(None, ctx.trace_len))


def _within(stride: int, length: int, out_shape) -> tuple[int, int] | None:
    extent = stride * length
    for j, size in enumerate(out_shape):
        suffix = _prod(out_shape[j + 1:])
        if suffix <= stride and stride % suffix == 0 and extent <= suffix * size \
                and (suffix * size) % extent == 0 and (size > 1 or length == 1):
            return j, stride // suffix
    return None


@register_transfer(aten.select)
def select(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    shape = ctx.shape(node.args[0])
    dim, index = norm_dim(node.args[1], len(shape)), int(node.args[2])
    from_end = index < 0 or (index == shape[dim] - 1 and shape[dim] > 2)
    index = index % shape[dim]
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim and frame.inner == 1:
            span = frame.collapse(index, ctx.trace_len, from_end)
            frames[name] = replace(frame, dim=None, window=None, key=None,
                                   span=span.union(frame.span) if frame.span else span)
        elif frame.key is not None and frame.key.dim == dim:
            frames[name] = replace(frame, key=None)
        elif frame.dim == dim:
            frames[name] = replace(frame, dim=None, window=None, key=None,
                                   span=frame.collapse(None, ctx.trace_len))
        else:
            frames[name] = frame
    picked = any(f.dim == dim for f in reach.frames.values())
    reach = reach.with_frames(frames, positional=reach.positional or picked,
                              picked=index if picked else reach.picked)
    return _remap(reach, lambda d: None if d == dim else d - (d > dim), ctx.trace_len)


@register_transfer(aten.slice, aten.narrow)
def slice_(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    shape = ctx.shape(node.args[0])
    dim = norm_dim(arg(node, 1, "dim", 0), len(shape))
    size = shape[dim]
    if node.target.overloadpacket is aten.narrow:
        start = int(node.args[2]) % size if size else 0
        stop, step = start + int(node.args[3]), 1
    else:
        start, stop, step = arg(node, 2, "start"), arg(node, 3, "end"), arg(node, 4, "step", 1)
        start, stop, step = slice(start, stop, step).indices(size)
    if start == 0 and stop >= size and step == 1:
        return reach
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim and frame.window is not None and frame.inner == 1 \
                and not frame.reversed:
            lo, hi = frame.window
            shift = frame.jump * start
            frames[name] = replace(frame, window=(lo + shift, hi + shift),
                                   jump=frame.jump * step, length=len(range(start, stop, step)),
                                   shift=frame.shift + float(shift))
        elif frame.key is not None and frame.key.dim == dim:
            key = frame.key
            shift = frame.jump * start
            frames[name] = replace(frame, key=replace(key, lo=key.lo + shift, hi=key.hi + shift))
        elif frame.dim == dim:
            ctx.note("slice of a reversed or merged sequence axis: treated as global")
            frames[name] = replace(frame, window=(-INF, INF))
        else:
            frames[name] = frame
    positional = reach.positional or any(f.dim == dim for f in reach.frames.values())
    return reach.with_frames(frames, positional=positional)


@register_transfer(aten.split, aten.split_with_sizes, aten.chunk, aten.unbind, aten.tensor_split)
def split(node: Node, ctx: TransferContext):
    pieces = node.meta.get("val")
    reach = ctx.reach(node.args[0])
    shape = ctx.shape(node.args[0])
    if node.target.overloadpacket is aten.unbind:
        dim = norm_dim(arg(node, 1, "dim", 0), len(shape))
    else:
        dim = norm_dim(arg(node, 2, "dim", 0), len(shape))
    if not any(f.dim == dim or (f.key and f.key.dim == dim) for f in reach.frames.values()):
        return tuple(reach for _ in pieces)
    out, start = [], 0
    for piece in pieces:
        if node.target.overloadpacket is aten.unbind:
            out.append(_select_reach(reach, shape, dim, start, ctx))
            start += 1
            continue
        width = int(piece.shape[dim])
        out.append(_slice_reach(reach, dim, start, width, ctx))
        start += width
    return tuple(out)


def _select_reach(reach, shape, dim, index, ctx):
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim:
            frames[name] = replace(frame, dim=None, window=None, key=None,
                                   span=frame.collapse(index, ctx.trace_len))
        else:
            frames[name] = frame
    return _remap(reach.with_frames(frames, positional=True, picked=index),
                  lambda d: None if d == dim else d - (d > dim), trace_len=ctx.trace_len)


def _slice_reach(reach, dim, start, width, ctx):
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim and frame.window is not None:
            lo, hi = frame.window
            shift = frame.jump * start
            frames[name] = replace(frame, window=(lo + shift, hi + shift), length=width,
                                   shift=frame.shift + float(shift))
        else:
            frames[name] = frame
    return reach.with_frames(frames, positional=True)


@register_transfer(aten.flip)
def flip(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dims = {norm_dim(d, rank) for d in node.args[1]}
    frames = {name: replace(f, reversed=not f.reversed) if f.dim in dims else f
              for name, f in reach.frames.items()}
    return reach.with_frames(frames)
