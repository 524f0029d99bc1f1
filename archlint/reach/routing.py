"""Mixture-of-experts routing: rows picked by a data-dependent index, put back by it.

A Mixtral-style block flattens the tokens to rows, asks ``torch.where(mask[e])`` which
rows (and which of the top-k slots) chose expert ``e``, runs the expert on
``flat[rows]`` and adds the result back with ``out.index_add_(0, rows, y)``. Which rows
are picked depends on the router's output at every position, so any op on its own
looks global; the pair is not: the row put back at position p is the one picked from
p, so p's output reads only p (and the router's decision at p).

The pass follows that pair. ``where(cond)`` (ATen ``where.default``/``nonzero``) gives
coordinate tensors whose values depend on the condition everywhere (a collapsed span).
Indexing a tensor along its sequence axis by the coordinate of that axis gives a
*routed* frame (:attr:`FrameReach.routed` names the coordinate): element r reads the
position ``rows[r]`` through the same window as before, widened by what the condition
reads there. Per-row ops keep the marker (a Linear, SwiGLU, a product of two tensors
routed the same way); ``index_add``/``index_put`` by the same coordinate along that
axis returns to positions. Anything else that meets a routed frame (a mix with an
unrouted tensor, a scatter by another index, a reduction over rows) is conservative.
"""

from __future__ import annotations

import operator
from dataclasses import replace
from typing import Any

import torch
from torch.fx import Node

from archlint.reach.descriptor import FrameReach, TensorReach, longest
from archlint.reach.transfer import (
    TransferContext,
    arg,
    conservative,
    merge,
    norm_dim,
    register_transfer,
)

aten = torch.ops.aten


@register_transfer(aten.where.default, aten.nonzero, aten.argwhere)
def coordinates(node: Node, ctx: TransferContext):
    """The coordinates of the true entries of ``cond``: what they hold depends on the
    condition at every position (a span over the whole frame, no axis of its own)."""
    cond = node.args[0]
    reach = ctx.reach(cond)
    if reach is None:
        return None
    frames = {name: replace(frame, dim=None, window=None, key=None, routed=None,
                            span=frame.collapse(None, ctx.trace_len)
                            if frame.dim is not None else frame.span)
              for name, frame in reach.frames.items()}
    one = TensorReach(frames, reach.positional, reach.serial)
    if node.target is aten.where.default:
        return tuple(one for _ in range(len(ctx.shape(cond) or ())))
    return one


def route_of(index: Any) -> tuple[Node, int] | None:
    """``(where node, axis)`` when ``index`` is coordinate ``axis`` of a ``where(cond)``."""
    if not (isinstance(index, Node) and index.op == "call_function"
            and index.target is operator.getitem and isinstance(index.args[1], int)):
        return None
    source = index.args[0]
    if isinstance(source, Node) and source.target is aten.where.default:
        return source, index.args[1]
    return None


def route_name(index: Node) -> str:
    found = route_of(index)
    return f"{found[0].name}[{found[1]}]" if found else index.name


def _condition_frame(ctx: TransferContext, where: Node, axis: int,
                     name: str) -> FrameReach | None:
    """The condition's reach along the axis its coordinate ``axis`` indexes."""
    cond = ctx.reach(where.args[0])
    if cond is None or name not in cond.frames:
        return None
    frame = cond.frames[name]
    return frame if frame.dim == axis else None


def routed_index(node: Node, ctx: TransferContext, reach: TensorReach) -> TensorReach | None:
    """``x[rows]`` / ``w[rows, slots]`` with ``rows`` a ``where`` coordinate along x's
    only frame dim: a routed frame (see the module docstring); None when it is not."""
    indices = list(node.args[1])
    picks = [(d, i) for d, i in enumerate(indices) if i is not None]
    dims = {f.dim for f in reach.frames.values() if f.dim is not None}
    if len(dims) != 1 or any(f.key is not None for f in reach.frames.values()):
        return None
    (frame_dim,) = dims
    on_frame = [i for d, i in picks if d == frame_dim]
    if len(on_frame) != 1 or route_of(on_frame[0]) is None:
        return None
    where, axis = route_of(on_frame[0])
    # every other index is a coordinate of the same where: row r of each is entry r
    if any(route_of(i) is None or route_of(i)[0] is not where for _, i in picks):
        return None
    first = [d for d, _ in picks]
    if first != list(range(first[0], first[0] + len(first))):
        return None                        # advanced indices apart: result dims move to 0
    out_dim = first[0]
    if frame_dim < out_dim:
        return None
    shape = ctx.out_shape()
    frames: dict[str, FrameReach] = {}
    for name, frame in reach.frames.items():
        if frame.dim is None:
            frames[name] = frame
            continue
        condition = _condition_frame(ctx, where, axis, name)
        base = frame if condition is None else merge(frame, replace(condition, dim=frame.dim))
        frames[name] = replace(base, dim=out_dim, routed=route_name(on_frame[0]),
                               length=shape[out_dim] if shape else base.length)
    serials = [reach.serial] + [r.serial for r in (ctx.reach(i) for _, i in picks) if r]
    return reach.with_frames(frames, serial=longest(serials, ctx.trace_len))


@register_transfer(aten.index_add, aten.index_add_)
def index_add(node: Node, ctx: TransferContext):
    """``out.index_add_(dim, rows, y)``: y's rows, routed by ``rows``, back at their
    positions; anything else scattered along a frame is conservative."""
    target, index, source = node.args[0], node.args[2], node.args[3]
    shape = ctx.shape(target)
    dim = norm_dim(node.args[1], len(shape or ()))
    return _scatter(node, ctx, target, dim, index, source)


@register_transfer(aten.index_put, aten.index_put_)
def index_put(node: Node, ctx: TransferContext):
    """``out[rows] = y`` / ``out.index_put_((rows,), y, accumulate=True)``."""
    target, indices, source = node.args[0], list(node.args[1]), node.args[2]
    picks = [(d, i) for d, i in enumerate(indices) if i is not None]
    if len(picks) != 1:
        return conservative(node, ctx)
    dim, index = picks[0]
    return _scatter(node, ctx, target, dim, index, source)


def _scatter(node: Node, ctx: TransferContext, target: Any, dim: int, index: Any,
             source: Any):
    reach, base = ctx.reach(source), ctx.reach(target)
    if reach is None or route_of(index) is None:
        return conservative(node, ctx)
    name = route_name(index)
    routed = {n: f for n, f in reach.frames.items() if f.dim is not None}
    if not routed or any(f.routed != name or f.dim != dim for f in routed.values()):
        return conservative(node, ctx)
    length = (ctx.shape(target) or (0,) * (dim + 1))[dim]
    frames = {n: (replace(f, routed=None, length=length) if f.dim is not None else f)
              for n, f in reach.frames.items()}
    serials = [reach.serial]
    if base is not None:
        if any(f.routed is not None for f in base.frames.values()):
            return conservative(node, ctx)
        for n, f in base.frames.items():
            frames[n] = merge(frames[n], f) if n in frames else f
        serials.append(base.serial)
    return TensorReach(frames, reach.positional or (base is not None and base.positional),
                       longest(serials, ctx.trace_len))


@register_transfer(aten.one_hot)
def one_hot(node: Node, ctx: TransferContext):
    """A new trailing class axis: each position reads only its own index."""
    return ctx.reach(node.args[0])


@register_transfer(aten.topk)
def topk(node: Node, ctx: TransferContext):
    """Values and indices of the top entries along ``dim``: per position when ``dim``
    is not a frame's axis (the router's top-k experts of each token)."""
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]) or ())
    dim = norm_dim(arg(node, 2, "dim", -1), rank)
    if reach is None or any(f.dim == dim or (f.key is not None and f.key.dim == dim)
                            for f in reach.frames.values()):
        return conservative(node, ctx)
    return (reach, reach)
