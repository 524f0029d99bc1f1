"""Attention masks: how a mask narrows the band of keys each query reads.

A mask is read from its concrete value at the trace length when it does not depend on the
input (``tril``, ``arange`` comparisons, registered buffers, ``is_causal``): the keep
matrix gives the lowest and highest allowed key offset ``j - i``, a side that reaches the
first (last) key on every row being unbounded. A mask computed from the input is
data-dependent: the band is left open and the report says so. Softmax over the key axis
belongs to attention; over a sequence axis it mixes every position.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.fx import Node

from archlint.classify.masks import band_offsets
from archlint.reach.descriptor import TensorReach
from archlint.reach.hops import INF
from archlint.reach.transfer import (
    TransferContext,
    aten,
    conservative,
    norm_dim,
    register_transfer,
    union,
)

#: A fill value at or below this blocks a score exactly (exp underflows to 0 in float32
#: and float64 alike).
BLOCKING = -1e3


def is_float(ctx, node) -> bool:
    value = node.meta.get("val") if isinstance(node, Node) else None
    return isinstance(value, torch.Tensor) and value.is_floating_point()


@register_transfer(aten.masked_fill)
def masked_fill(node: Node, ctx: TransferContext):
    scores, mask, fill = node.args[0], node.args[1], node.args[2]
    base = union(ctx, [scores, mask], ctx.out_shape())
    if _blocks(ctx, fill):
        return add_to_scores(ctx, base, mask, additive=False, keep_when_true=False)
    return base


@register_transfer(aten.where)
def where(node: Node, ctx: TransferContext):
    cond, a, b = node.args[0], node.args[1], node.args[2] if len(node.args) > 2 else None
    if b is None:
        return conservative(node, ctx)
    base = union(ctx, [cond, a, b], ctx.out_shape())
    if _blocks(ctx, b):
        return add_to_scores(ctx, base, cond, additive=False, keep_when_true=True)
    if _blocks(ctx, a):
        return add_to_scores(ctx, base, cond, additive=False, keep_when_true=False)
    return base


@register_transfer(aten.add, aten.sub)
def add(node: Node, ctx: TransferContext):
    base = union(ctx, [a for a in node.args[:2]], ctx.out_shape())
    for other in node.args[:2]:
        if isinstance(other, Node) and ctx.reach(other) is None and is_float(ctx, other):
            base = add_to_scores(ctx, base, other, additive=True)
    return base


def _blocks(ctx, fill) -> bool:
    value = ctx.value(fill)
    if isinstance(value, torch.Tensor):
        return value.numel() > 0 and bool((value <= BLOCKING).all())
    return isinstance(value, (int, float)) and value <= BLOCKING


def add_to_scores(ctx, reach: TensorReach | None, mask: Node, additive: bool,
                   keep_when_true: bool = True) -> TensorReach | None:
    """Narrow the band of every key axis in ``reach`` by a constant mask."""
    if reach is None or not any(f.key for f in reach.frames.values()):
        return reach
    if ctx.reach(mask) is not None:
        ctx.note("an attention mask depends on the input: its band cannot be read "
                 "statically (all keys assumed visible; the probe measures the real one)")
        return reach
    value = ctx.value(mask)
    if not isinstance(value, torch.Tensor) or value.dim() < 2:
        return reach
    if additive or value.is_floating_point():
        keep = value > BLOCKING
    else:
        keep = value if keep_when_true else ~value
    keep = keep.reshape(-1, keep.shape[-2], keep.shape[-1]).any(0)
    if (additive or value.is_floating_point()) and _varies(value):
        # a bias that differs between (query, key) pairs (T5's relative position bias
        # passed to SDPA as attn_mask) tells attention where each key is
        reach = reach.with_frames(dict(reach.frames), positional=True)
    band = mask_band(keep, ctx)
    if band is None:
        return reach
    return restrict(reach, band[0], band[1], ctx, "mask")


def _varies(value: torch.Tensor) -> bool:
    """True when the finite entries of a float mask differ between (query, key) pairs of
    one (query x key) matrix (a bias per head alone says nothing of positions)."""
    matrices = value.detach().double().reshape(-1, value.shape[-2] * value.shape[-1])
    kept = torch.isfinite(matrices) & (matrices > BLOCKING)
    high = torch.where(kept, matrices, -torch.inf).amax(-1)
    low = torch.where(kept, matrices, torch.inf).amin(-1)
    return bool((kept.sum(-1) > 1).logical_and(high > low).any())


def mask_band(keep: torch.Tensor, ctx: TransferContext | None = None
              ) -> tuple[float, float] | None:
    """(lowest, highest) allowed key offset ``j - i`` of a keep matrix (see
    :func:`archlint.classify.masks.band_offsets`); holes are noted, the envelope used."""
    offsets = band_offsets(keep)
    if offsets is None:
        return None
    lo, hi, gaps = offsets
    if gaps and ctx is not None:
        ctx.note("an attention mask with holes: its envelope is used")
    return lo, hi


def restrict(reach: TensorReach, lo: float, hi: float, ctx, source: str) -> TensorReach:
    frames = {}
    for name, frame in reach.frames.items():
        if frame.key is not None:
            key = frame.key
            frames[name] = replace(frame, key=replace(key, band_lo=max(key.band_lo, lo),
                                                      band_hi=min(key.band_hi, hi)))
        else:
            frames[name] = frame
    positional = reach.positional or lo > -INF or hi < INF
    return reach.with_frames(frames, positional=positional)


@register_transfer(aten.softmax, aten._softmax, aten._safe_softmax, aten.log_softmax,
                   aten._log_softmax)
def softmax(node: Node, ctx: TransferContext):
    """Softmax over the key axis is part of attention; over a sequence axis it mixes all."""
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dim = norm_dim(node.args[1], rank)
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim and frame.key is None:
            ctx.mix("global", name, INF, INF)
            frames[name] = replace(frame, window=(-INF, INF), left=frame.left.step(INF),
                                   right=frame.right.step(INF))
        else:
            frames[name] = frame
    return reach.with_frames(frames)
