"""Transfer functions of local-window ops: convolution, pooling, padding, unfold, upsampling.

A window op with kernel ``k``, dilation ``d``, stride ``s`` and left padding ``p`` makes
output ``i`` read its input ``s*i - p .. s*i - p + d*(k-1)``; composed with the input's
own window and jump this is Araujo et al.'s recurrence (Distill 2019). A kernel as long
as the traced sequence is a long convolution: the side it spans is unbounded.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from torch.fx import Node

from archlint.reach.descriptor import FrameReach, TensorReach
from archlint.reach.hops import INF
from archlint.reach.transfer import (
    TransferContext,
    arg,
    aten,
    conservative,
    norm_dim,
    register_transfer,
)


def apply_window(frame: FrameReach, lo_op: int, hi_op: int, stride: int, out_length: int,
                 ctx: TransferContext, name: str, kind: str = "window") -> FrameReach:
    """Compose a window ``[stride*i + lo_op, stride*i + hi_op]`` (in the op's input index)
    onto ``frame``."""
    if frame.reversed:
        lo_op, hi_op = -hi_op, -lo_op
    jump = frame.jump
    lo, hi = frame.window
    long_left = -lo_op >= frame.length - 1 > 0
    long_right = hi_op >= frame.length - 1 > 0
    new_lo = -INF if long_left else lo + jump * lo_op
    new_hi = INF if long_right else hi + jump * hi_op
    # one hop moves information from a tap to the output, both seen from the output's own
    # position; a pending pad/slice offset (``shift``) moves the taps
    reach_left = INF if long_left else float(max(0, -(jump * lo_op + frame.shift)))
    reach_right = INF if long_right else float(max(0, jump * hi_op + frame.shift))
    if hi_op > lo_op:
        ctx.mix(kind, name, reach_left, reach_right)
    return replace(frame, window=(float(new_lo), float(new_hi)), jump=jump * stride,
                   length=out_length, shift=0.0, left=frame.left.step(reach_left),
                   right=frame.right.step(reach_right))


def _per_dim(values, count: int) -> list[int]:
    if values is None:
        return [None] * count
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) == 1:
        values = values * count
    return [int(v) for v in values]


def _window_op(ctx: TransferContext, source: Node, kernels, strides, pads_left, pads_right,
               dilations, channel_mixing: bool, kind: str = "window") -> TensorReach | None:
    reach = ctx.reach(source)
    if reach is None:
        return None
    in_shape, out_shape = ctx.shape(source), ctx.out_shape()
    spatial = len(kernels)
    first = len(in_shape) - spatial
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim is None:
            frames[name] = frame
        elif frame.dim >= first and frame.inner == 1 and frame.key is None:
            q = frame.dim - first
            k, d = kernels[q], dilations[q]
            extent = d * (k - 1)
            if k * d >= frame.length > 1 and kind == "pool" and pads_left[q] == 0:
                frames[name] = replace(frame, dim=None, window=None,
                                       span=frame.collapse(None, ctx.trace_len),
                                       left=frame.left.step(INF), right=frame.right.step(INF))
                ctx.mix("global", name, INF, INF)
                continue
            frames[name] = apply_window(frame, -pads_left[q], extent - pads_left[q],
                                        strides[q], out_shape[frame.dim], ctx, name, kind)
        elif channel_mixing and frame.dim == first - 1:
            frames[name] = replace(frame, dim=None, window=None, key=None,
                                   span=frame.collapse(None, ctx.trace_len),
                                   left=frame.left.step(INF), right=frame.right.step(INF))
            ctx.mix("global", name, INF, INF)
        elif frame.dim >= first - (1 if channel_mixing else 0):
            ctx.note("a window op over a merged sequence axis: treated as global")
            frames[name] = replace(frame, window=(-INF, INF), key=None,
                                   left=frame.left.step(INF), right=frame.right.step(INF))
            ctx.mix("global", name, INF, INF)
        else:
            frames[name] = frame
    positional = reach.positional or any(k > 1 for k in kernels)
    return reach.with_frames(frames, positional=positional)


@register_transfer(aten.conv1d, aten.conv2d, aten.conv3d, aten.convolution, aten._convolution)
def convolution(node: Node, ctx: TransferContext):
    source, weight = node.args[0], node.args[1]
    if ctx.reach(weight) is not None:
        return conservative(node, ctx)
    w_shape = ctx.shape(weight)
    spatial = len(w_shape) - 2
    kernels = [int(k) for k in w_shape[2:]]
    packet = node.target.overloadpacket
    if packet in (aten.convolution, aten._convolution):
        stride, padding, dilation = node.args[3], node.args[4], node.args[5]
        if node.args[6]:
            return _transposed(node, ctx, kernels, _per_dim(stride, spatial),
                               _per_dim(padding, spatial), _per_dim(dilation, spatial))
    else:
        stride, padding, dilation = (arg(node, 3, "stride", 1), arg(node, 4, "padding", 0),
                                     arg(node, 5, "dilation", 1))
    strides, dilations = _per_dim(stride, spatial), _per_dim(dilation, spatial)
    if isinstance(padding, str):
        totals = [d * (k - 1) if padding == "same" else 0 for k, d in zip(kernels, dilations)]
        lefts = [t // 2 for t in totals]
        rights = [t - t // 2 for t in totals]
    else:
        lefts = rights = _per_dim(padding, spatial)
    return _window_op(ctx, source, kernels, strides, lefts, rights, dilations, True)


@register_transfer(aten.conv_transpose1d, aten.conv_transpose2d)
def conv_transpose(node: Node, ctx: TransferContext):
    w_shape = ctx.shape(node.args[1])
    spatial = len(w_shape) - 2
    kernels = [int(k) for k in w_shape[2:]]
    return _transposed(node, ctx, kernels, _per_dim(arg(node, 3, "stride", 1), spatial),
                       _per_dim(arg(node, 4, "padding", 0), spatial),
                       _per_dim(arg(node, 7, "dilation", 1), spatial))


def _transposed(node, ctx, kernels, strides, paddings, dilations):
    """Transposed conv: output i reads inputs (i + p - d*(k-1))/s .. (i + p)/s."""
    reach = ctx.reach(node.args[0])
    in_shape, out_shape = ctx.shape(node.args[0]), ctx.out_shape()
    first = len(in_shape) - len(kernels)
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim is not None and frame.dim >= first and frame.window is not None:
            q = frame.dim - first
            s = Fraction(strides[q])
            jump = frame.jump
            lo, hi = frame.window
            new_lo = lo + jump * (paddings[q] - dilations[q] * (kernels[q] - 1)) / s
            new_hi = hi + jump * paddings[q] / s
            ctx.mix("window", name, float(max(0, lo - new_lo)), float(max(0, new_hi - hi)))
            frames[name] = replace(frame, window=(float(new_lo), float(new_hi)), jump=jump / s,
                                   length=out_shape[frame.dim],
                                   left=frame.left.step(float(max(0, lo - new_lo))),
                                   right=frame.right.step(float(max(0, new_hi - hi))))
        elif frame.dim == first - 1:
            frames[name] = replace(frame, dim=None, window=None,
                                   span=frame.collapse(None, ctx.trace_len))
        else:
            frames[name] = frame
    return reach.with_frames(frames, positional=True)


@register_transfer(aten.max_pool1d, aten.max_pool2d, aten.max_pool3d, aten.avg_pool1d,
                   aten.avg_pool2d, aten.avg_pool3d, aten.max_pool1d_with_indices,
                   aten.max_pool2d_with_indices)
def pooling(node: Node, ctx: TransferContext):
    name = node.target.overloadpacket.__name__
    spatial = 2 if "2d" in name else 3 if "3d" in name else 1
    kernels = _per_dim(node.args[1], spatial)
    strides = _per_dim(arg(node, 2, "stride") or kernels, spatial)
    pads = _per_dim(arg(node, 3, "padding", 0), spatial)
    dilations = _per_dim(arg(node, 4, "dilation", 1), spatial) if name.startswith("max") \
        else [1] * spatial
    out = _window_op(ctx, node.args[0], kernels, strides, pads, pads, dilations, False, "pool")
    return (out, out) if name.endswith("with_indices") else out


@register_transfer(aten.adaptive_avg_pool1d, aten.adaptive_avg_pool2d, aten._adaptive_avg_pool2d,
                   aten.adaptive_max_pool1d, aten.adaptive_max_pool2d, aten.adaptive_avg_pool3d)
def adaptive_pooling(node: Node, ctx: TransferContext):
    """Adaptive pooling to a fixed size: each output covers ~n/size positions."""
    reach = ctx.reach(node.args[0])
    name = node.target.overloadpacket.__name__
    sizes = node.args[1] if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
    spatial = len(sizes)
    first = len(ctx.shape(node.args[0])) - spatial
    frames = {}
    for fname, frame in reach.frames.items():
        if frame.dim is not None and frame.dim >= first:
            size = sizes[frame.dim - first]
            if size not in (1, None):
                ctx.note(f"adaptive pooling to {size} outputs: each reads ~n/{size} positions "
                         "(treated as the whole sequence)")
            frames[fname] = replace(frame, dim=None, window=None, key=None,
                                    span=frame.collapse(None, ctx.trace_len),
                                    left=frame.left.step(INF), right=frame.right.step(INF))
            ctx.mix("global", fname, INF, INF)
        else:
            frames[fname] = frame
    out = reach.with_frames(frames)
    return (out, out) if "max" in name else out


@register_transfer(aten.constant_pad_nd, aten.pad, aten.reflection_pad1d, aten.reflection_pad2d,
                   aten.replication_pad1d, aten.replication_pad2d)
def pad(node: Node, ctx: TransferContext):
    """Padding shifts positions: left padding p makes output i read input i - p."""
    reach = ctx.reach(node.args[0])
    pads = list(node.args[1])
    rank = len(ctx.shape(node.args[0]))
    out_shape = ctx.out_shape()
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim is not None and frame.window is not None and frame.key is None:
            pair = rank - 1 - frame.dim
            if 0 <= pair < len(pads) // 2:
                left, right = int(pads[2 * pair]), int(pads[2 * pair + 1])
                if frame.reversed:
                    left = right
                lo, hi = frame.window
                moved = float(frame.jump * left)
                frames[name] = replace(frame, window=(lo - moved, hi - moved),
                                       shift=frame.shift - moved, length=out_shape[frame.dim])
                continue
        frames[name] = frame
    return reach.with_frames(frames)


@register_transfer(aten.unfold)
def unfold(node: Node, ctx: TransferContext):
    """``x.unfold(dim, size, step)``: windows of ``size`` positions every ``step``."""
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dim, size, step = norm_dim(node.args[1], rank), int(node.args[2]), int(node.args[3])
    out_shape = ctx.out_shape()
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim and frame.window is not None:
            frames[name] = apply_window(frame, 0, size - 1, step, out_shape[dim], ctx, name)
        else:
            frames[name] = frame
    return reach.with_frames(frames, positional=True)


@register_transfer(aten.upsample_nearest1d, aten.upsample_nearest2d, aten.upsample_linear1d,
                   aten.upsample_bilinear2d, aten._upsample_nearest_exact1d,
                   aten._upsample_nearest_exact2d, aten.repeat_interleave)
def upsample(node: Node, ctx: TransferContext):
    """Upsampling by s: jump 1/s; each output reads the one or two nearest inputs."""
    reach = ctx.reach(node.args[0])
    if reach is None:
        return None
    in_shape, out_shape = ctx.shape(node.args[0]), ctx.out_shape()
    if len(in_shape) != len(out_shape):
        return conservative(node, ctx)
    frames = {}
    for name, frame in reach.frames.items():
        dim = frame.dim
        if dim is not None and frame.window is not None and out_shape[dim] != in_shape[dim]:
            scale = Fraction(out_shape[dim], in_shape[dim])
            lo, hi = frame.window
            frames[name] = replace(frame, window=(lo - float(frame.jump), hi + float(frame.jump)),
                                   jump=frame.jump / scale, length=out_shape[dim])
            ctx.note(f"upsampling x{float(scale):g}: each output reads the nearest inputs")
        else:
            frames[name] = frame
    return reach.with_frames(frames)
