"""Transfer functions of ops that run along the whole sequence: reductions, normalizations
over it, prefix scans, recurrent layers; and of lookups (embedding, indexing).

- a reduction over the sequence (``mean``, ``amax``, ``logsumexp``) or a norm whose
  statistics span it (``LayerNorm`` over ``(n, d)``, ``GroupNorm`` of a conv net) makes
  every position reach the result: one global hop;
- a prefix scan (``cumsum``: linear attention, parallel SSM scans) reaches the whole
  past in one hop and one serial step;
- ``aten.lstm``/``gru``/``rnn_*`` reach the causal prefix (both sides if bidirectional)
  one position per step: ``L(d) = d`` and ``n`` serial steps per stacked layer.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.fx import Node

from archlint.reach.assemble import _fit
from archlint.reach.descriptor import FrameReach, TensorReach
from archlint.reach.hops import INF
from archlint.reach.layout import _remap
from archlint.reach.routing import routed_index
from archlint.reach.transfer import (
    TransferContext,
    arg,
    aten,
    conservative,
    norm_dim,
    register_transfer,
    union,
)


def _collapse(frame: FrameReach, ctx: TransferContext, name: str, **detail) -> FrameReach:
    ctx.mix("global", name, INF, INF, **detail)
    return replace(frame, dim=None, window=None, key=None,
                   span=frame.collapse(None, ctx.trace_len),
                   left=frame.left.step(INF), right=frame.right.step(INF))


def reduce_dims(reach: TensorReach, dims: list[int], keepdim: bool, ctx: TransferContext,
                **detail) -> TensorReach:
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim in dims:
            frames[name] = _collapse(frame, ctx, name, **detail)
        elif frame.key is not None and frame.key.dim in dims:
            key = frame.key
            jump = frame.jump
            lo = min(frame.window[0], jump * key.band_lo + key.lo if key.band_lo > -INF else -INF)
            hi = max(frame.window[1], jump * key.band_hi + key.hi if key.band_hi < INF else INF)
            ctx.mix("attention", name, INF if key.band_lo == -INF else -float(jump * key.band_lo),
                    INF if key.band_hi == INF else float(jump * key.band_hi))
            frames[name] = replace(frame, key=None, window=(float(lo), float(hi)))
        else:
            frames[name] = frame
    out = reach.with_frames(frames)
    if keepdim:
        return out
    return _remap(out, lambda d: None if d in dims else d - sum(1 for x in dims if x < d))


def _dims_arg(node: Node, rank: int, index: int = 1):
    dims = arg(node, index, "dim")
    if dims is None or dims == [] or dims == ():
        return list(range(rank))
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    return [norm_dim(d, rank) for d in dims]


@register_transfer(aten.sum, aten.mean, aten.amax, aten.amin, aten.logsumexp, aten.prod,
                   aten.nansum, aten.nanmean, aten.any, aten.all, aten.count_nonzero,
                   aten.argmax, aten.argmin, aten.linalg_vector_norm, aten.norm, aten.var,
                   aten.std, aten.var_mean, aten.std_mean, aten.max, aten.min, aten.median,
                   aten.mode)
def reduction(node: Node, ctx: TransferContext):
    source = node.args[0]
    reach = ctx.reach(source)
    rank = len(ctx.shape(source))
    packet = node.target.overloadpacket
    if packet in (aten.max, aten.min) and (len(node.args) < 2 or isinstance(node.args[1], Node)):
        if len(node.args) >= 2:
            return union(ctx, node.args[:2], ctx.out_shape())
        return reduce_dims(reach, list(range(rank)), False, ctx)
    index = 2 if packet in (aten.linalg_vector_norm, aten.norm) else 1
    dims = _dims_arg(node, rank, index)
    value = node.meta.get("val")
    out_rank = len(value[0].shape) if isinstance(value, (tuple, list)) else (
        len(value.shape) if isinstance(value, torch.Tensor) else 0)
    keepdim = out_rank == rank and rank > 0
    out = reduce_dims(reach, dims, keepdim, ctx, reduction=packet.__name__)
    if isinstance(value, (tuple, list)):
        return tuple(out for _ in value)
    return out


@register_transfer(aten.cumsum, aten.cumprod, aten.logcumsumexp, aten.cummax, aten.cummin,
                   aten._cummax_helper)
def scan(node: Node, ctx: TransferContext):
    """A prefix scan: position t reads 0..t in one (parallel) step. A scan over integers
    or booleans (position ids counted from a padding mask) computes positions, not a
    sequence-mixing step: it is not counted in S(n)."""
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dim = norm_dim(node.args[1], rank)
    value = node.args[0].meta.get("val")
    positions = isinstance(value, torch.Tensor) and not value.is_floating_point() \
        and not value.is_complex()
    detail = {"positional": True} if positions else {}
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim and frame.window is not None:
            lo, hi = frame.window
            if frame.reversed:
                ctx.mix("scan", name, 0.0, INF, **detail)
                frames[name] = replace(frame, window=(lo, INF), right=frame.right.step(INF))
            else:
                ctx.mix("scan", name, INF, 0.0, **detail)
                frames[name] = replace(frame, window=(-INF, hi), left=frame.left.step(INF))
        else:
            frames[name] = frame
    out = reach.with_frames(frames, positional=True)
    value = node.meta.get("val")
    return tuple(out for _ in value) if isinstance(value, (tuple, list)) else out


@register_transfer(aten.layer_norm, aten.native_layer_norm, aten.rms_norm, aten._fused_rms_norm)
def layer_norm(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    count = len(node.args[1])
    out = _normalize(reach, list(range(rank - count, rank)), ctx)
    value = node.meta.get("val")
    return tuple(out for _ in value) if isinstance(value, (tuple, list)) else out


@register_transfer(aten.group_norm, aten.native_group_norm, aten.instance_norm)
def group_norm(node: Node, ctx: TransferContext):
    """GroupNorm/InstanceNorm statistics run over every position of each sample."""
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    out = _normalize(reach, list(range(2, rank)), ctx)
    if any(f.dim is not None and f.dim >= 2 for f in reach.frames.values()):
        ctx.note("GroupNorm/InstanceNorm statistics span the whole sequence: every position "
                 "reaches every output (weakly)")
    value = node.meta.get("val")
    return tuple(out for _ in value) if isinstance(value, (tuple, list)) else out


def _normalize(reach: TensorReach, dims: list[int], ctx: TransferContext) -> TensorReach:
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim in dims:
            ctx.mix("global", name, INF, INF, norm=True)
            frames[name] = replace(frame, window=(-INF, INF), left=frame.left.step(INF),
                                   right=frame.right.step(INF))
        else:
            frames[name] = frame
    return reach.with_frames(frames)


@register_transfer(aten.batch_norm, aten._native_batch_norm_legit_no_training,
                   aten._native_batch_norm_legit, aten.native_batch_norm,
                   aten._native_batch_norm_legit_functional)
def batch_norm(node: Node, ctx: TransferContext):
    """Analyzed with running statistics (inference): per position. In training, batch
    statistics couple positions weakly; that is not a dependency a model can learn."""
    reach = ctx.reach(node.args[0])
    value = node.meta.get("val")
    return tuple(reach for _ in value) if isinstance(value, (tuple, list)) else reach


_RECURRENT_FIELDS = {aten.lstm: 3, aten.gru: 2, aten.rnn_tanh: 2, aten.rnn_relu: 2}


@register_transfer(aten.lstm, aten.gru, aten.rnn_tanh, aten.rnn_relu)
def recurrence(node: Node, ctx: TransferContext):
    """``nn.LSTM``/``GRU``/``RNN``: causal prefix (bidirectional: all), one position per
    step, ``num_layers * n`` serial steps."""
    if node.target._overloadname != "input":
        return conservative(node, ctx)
    source, state = node.args[0], node.args[1]
    layers, bidirectional, batch_first = int(node.args[4]), bool(node.args[7]), bool(node.args[8])
    reach = ctx.reach(source)
    rank = len(ctx.shape(source))
    time = 1 if batch_first and rank == 3 else 0
    states = [s for s in (state if isinstance(state, (list, tuple)) else [state])]
    frames, finals = {}, {}
    for name, frame in reach.frames.items():
        if frame.dim == time and frame.window is not None:
            lo, hi = frame.window
            both = bidirectional
            new_lo = -INF if (both or not frame.reversed) else lo
            new_hi = INF if (both or frame.reversed) else hi
            jump = float(frame.jump)
            left = frame.left.recur(jump) if new_lo == -INF else frame.left
            right = frame.right.recur(jump) if new_hi == INF else frame.right
            ctx.mix("recurrence", name, INF if new_lo == -INF else 0.0,
                    INF if new_hi == INF else 0.0, per_n=layers, layers=layers,
                    bidirectional=bidirectional)
            out = replace(frame, window=(new_lo, new_hi), left=left, right=right)
            frames[name] = out
            finals[name] = replace(out, dim=None, window=None,
                                   span=out.collapse(None, ctx.trace_len))
        else:
            frames[name] = frame
            finals[name] = frame if frame.dim is None else replace(
                frame, dim=None, window=None, span=frame.collapse(None, ctx.trace_len))
    output = reach.with_frames(frames, positional=True)
    final = _remap(reach.with_frames(finals, positional=True), lambda d: None)
    extra = union(ctx, states, None) if any(ctx.reach(s) for s in states) else None
    if extra is not None:
        final = union_reaches(final, extra)
    return (output,) + (final,) * (_RECURRENT_FIELDS[node.target.overloadpacket] - 1)


def union_reaches(a: TensorReach, b: TensorReach) -> TensorReach:
    from archlint.reach.transfer import merge
    frames = dict(a.frames)
    for name, frame in b.frames.items():
        frames[name] = merge(frames[name], frame) if name in frames else frame
    return a.with_frames(frames, positional=a.positional or b.positional)


@register_transfer(aten.lstm_cell, aten.gru_cell, aten.rnn_tanh_cell, aten.rnn_relu_cell)
def cell(node: Node, ctx: TransferContext):
    """One step of a recurrent cell: reads its input and its state (per batch row)."""
    state = node.args[1]
    inputs = [node.args[0]] + (list(state) if isinstance(state, (list, tuple)) else [state])
    value = node.meta.get("val")
    shape = tuple(value[0].shape) if isinstance(value, (tuple, list)) else ctx.out_shape()
    out = union(ctx, inputs, shape)
    return tuple(out for _ in value) if isinstance(value, (tuple, list)) else out


@register_transfer(aten.embedding)
def embedding(node: Node, ctx: TransferContext):
    """A table lookup: each output position reads its own index (and the table)."""
    if ctx.reach(node.args[0]) is not None:
        return conservative(node, ctx)
    return ctx.reach(node.args[1])


@register_transfer(aten.index_select, aten.index, aten.gather, aten.take_along_dim)
def index(node: Node, ctx: TransferContext):
    """Indexing along the sequence with a constant index is a re-ordering of positions."""
    source = node.args[0]
    reach = ctx.reach(source)
    packet = node.target.overloadpacket
    if reach is None:
        return _lookup(node, ctx, packet)
    rank = len(ctx.shape(source))
    if packet is aten.index:
        routed = routed_index(node, ctx, reach)
        if routed is not None:
            return routed
        picks = [(d, i) for d, i in enumerate(node.args[1]) if i is not None]
        if len(picks) != 1:
            return conservative(node, ctx)
        dim, positions = picks[0]
    else:
        dim, positions = norm_dim(node.args[1], rank), node.args[2]
    frames_here = [f for f in reach.frames.values() if f.dim == dim]
    if not frames_here:
        value = ctx.value(positions)
        if isinstance(value, torch.Tensor) and value.dim() == 1 and packet is not aten.gather:
            return reach
        if packet in (aten.gather, aten.take_along_dim) and _aligned_gather(
                reach, positions, dim, ctx):
            return reach
        return conservative(node, ctx)
    value = ctx.value(positions)
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or packet is aten.gather:
        return conservative(node, ctx)
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim != dim:
            frames[name] = frame
            continue
        supports = [frame.support_at(int(p) % frame.length, ctx.trace_len) for p in value]
        lo, hi = _fit(supports, frame.jump, ctx.trace_len)
        frames[name] = replace(frame, window=(lo, hi), length=len(supports))
    return reach.with_frames(frames, positional=True)


def _aligned_gather(reach: TensorReach, positions: Node, dim: int, ctx) -> bool:
    """``gather`` along a dim no frame runs on, with a constant index as large as the
    source on every frame dim (DeBERTa's relative-position scores): each output element
    reads the source at its own positions."""
    if ctx.reach(positions) is not None or not isinstance(positions, Node):
        return False
    index, source = ctx.shape(positions), ctx.shape(ctx.node.args[0])
    if index is None or source is None or len(index) != len(source):
        return False
    dims = [d for f in reach.frames.values()
            for d in (f.dim, f.key.dim if f.key else None) if d is not None]
    return all(d != dim and index[d] == source[d] for d in dims)


def _lookup(node: Node, ctx: TransferContext, packet) -> TensorReach | None:
    """A constant table read at input-dependent indices (RoBERTa's token-type buffer
    gathered at the position ids): each output element reads its own index, like an
    embedding."""
    if packet in (aten.gather, aten.take_along_dim):
        indices = node.args[2]
    elif packet is aten.index:
        found = [i for i in node.args[1] if i is not None]
        indices = found[0] if len(found) == 1 else None
    else:
        indices = node.args[2]
    reach = ctx.reach(indices) if isinstance(indices, Node) else None
    if reach is None or ctx.shape(indices) != ctx.out_shape()[:len(ctx.shape(indices))]:
        return conservative(node, ctx)
    return reach


@register_transfer(aten.glu)
def glu(node: Node, ctx: TransferContext):
    """``glu(x, dim)``: halves of ``x`` along ``dim`` multiplied elementwise; along a
    channel dim it acts per position (the conformer's pointwise conv), along the sequence
    it pairs positions n/2 apart."""
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dim = norm_dim(arg(node, 1, "dim", -1), rank)
    if any(f.dim == dim or (f.key is not None and f.key.dim == dim)
           for f in reach.frames.values()):
        return conservative(node, ctx)
    return reach


@register_transfer(aten.zeros_like, aten.ones_like, aten.empty_like, aten.full_like,
                   aten.rand_like, aten.randn_like, aten.randint_like, aten.new_zeros,
                   aten.new_ones, aten.new_empty, aten.new_full, aten.sym_size, aten.sym_numel,
                   aten.sym_stride, aten.sym_storage_offset, aten.scalar_tensor)
def shape_only(node: Node, ctx: TransferContext):
    """Depends on the input's shape only, never on its values."""
    return None
