"""Transfer functions of FFTs along the sequence: long convolutions (S4, Hyena, FNet).

``irfft(rfft(x, n=N) * rfft(k, n=N), n=N)`` is a linear convolution of x with a kernel
of ``len(k)`` taps when ``N >= len(x) + len(k) - 1`` (no circular wrap-around): output t
reads inputs ``t - len(k) + 1 .. t``, a causal window (the whole prefix when the kernel
is as long as the sequence). The pass follows that shape: a forward FFT marks the frame
as a spectrum ``(N, taps, length)``, a product with a constant spectrum adds the
kernel's taps, the inverse FFT turns it back into a window. Anything else in the
frequency domain (a product of two input spectra, a circular FFT) mixes all positions.
"""

from __future__ import annotations

from dataclasses import replace

from torch.fx import Node

from archlint.reach.descriptor import FrameReach, TensorReach
from archlint.reach.hops import INF
from archlint.reach.transfer import TransferContext, arg, aten, norm_dim, register_transfer, union

_FORWARD = (aten.fft_rfft, aten.fft_fft)
_INVERSE = (aten.fft_irfft, aten.fft_ifft)
_THROUGH = {"view", "reshape", "unsqueeze", "expand", "mul", "div", "to", "_to_copy", "clone",
            "contiguous", "transpose", "permute", "squeeze"}


def _global(frame: FrameReach, ctx: TransferContext, name: str, length: int) -> FrameReach:
    ctx.mix("global", name, INF, INF, fft=True)
    return replace(frame, window=(-INF, INF), spectrum=None, length=length,
                   left=frame.left.step(INF), right=frame.right.step(INF))


@register_transfer(*_FORWARD)
def forward_fft(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dim = norm_dim(arg(node, 2, "dim", -1), rank)
    size = arg(node, 1, "n")
    out = ctx.out_shape()
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim == dim and frame.window is not None and frame.spectrum is None:
            fft_size = int(size) if size is not None else frame.length
            frames[name] = replace(frame, spectrum=(fft_size, 1, frame.length),
                                   length=out[dim])
        elif frame.dim == dim:
            frames[name] = _global(frame, ctx, name, out[dim])
        else:
            frames[name] = frame
    return reach.with_frames(frames)


@register_transfer(aten.mul)
def multiply(node: Node, ctx: TransferContext):
    base = union(ctx, list(node.args[:2]), ctx.out_shape())
    if base is None or not any(f.spectrum for f in base.frames.values()):
        return base
    spectral_inputs = [a for a in node.args[:2] if ctx.reach(a) is not None and any(
        f.spectrum for f in ctx.reach(a).frames.values())]
    constants = [a for a in node.args[:2] if isinstance(a, Node) and ctx.reach(a) is None]
    frames = {}
    for name, frame in base.frames.items():
        if frame.spectrum is None:
            frames[name] = frame
            continue
        size, taps, length = frame.spectrum
        if len(spectral_inputs) > 1 or not constants:
            taps = size if len(spectral_inputs) > 1 else taps
        else:
            kernel = kernel_taps(constants[0])
            taps = size if kernel is None else taps + kernel - 1
        frames[name] = replace(frame, spectrum=(size, taps, length))
    return base.with_frames(frames)


def kernel_taps(node: Node) -> int | None:
    """Length of the kernel a constant spectrum was computed from (``rfft(k, n=N)``)."""
    seen = 0
    while isinstance(node, Node) and seen < 16:
        packet = getattr(node.target, "overloadpacket", None)
        if packet in _FORWARD:
            source = node.args[0]
            value = source.meta.get("val") if isinstance(source, Node) else None
            if value is None:
                return None
            dim = norm_dim(arg(node, 2, "dim", -1), value.dim())
            return int(value.shape[dim])
        if packet is None or packet.__name__ not in _THROUGH:
            return None
        node = node.args[0]
        seen += 1
    return None


@register_transfer(*_INVERSE)
def inverse_fft(node: Node, ctx: TransferContext):
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dim = norm_dim(arg(node, 2, "dim", -1), rank)
    out = ctx.out_shape()
    frames = {}
    for name, frame in reach.frames.items():
        if frame.dim != dim:
            frames[name] = frame
            continue
        if frame.spectrum is None:
            frames[name] = _global(frame, ctx, name, out[dim])
            continue
        size, taps, length = frame.spectrum
        if size < length + taps - 1:
            ctx.note("an FFT convolution shorter than signal + kernel wraps around: "
                     "treated as global")
            frames[name] = _global(frame, ctx, name, out[dim])
            continue
        lo, hi = frame.window
        if taps >= length:
            new_lo, reach_left = -INF, INF
        else:
            reach_left = float(frame.jump * (taps - 1))
            new_lo = lo - reach_left
        if taps > 1:
            ctx.mix("window", name, reach_left, 0.0, fft=True, taps=taps)
        frames[name] = replace(frame, window=(new_lo, hi), spectrum=None, length=out[dim],
                               left=frame.left.step(reach_left))
    return reach.with_frames(frames, positional=reach.positional or any(
        f.spectrum and f.spectrum[1] > 1 for f in reach.frames.values()))


@register_transfer(aten._fft_r2c, aten._fft_c2r, aten._fft_c2c, aten.fft_rfftn, aten.fft_irfftn,
                   aten.fft_fftn, aten.fft_ifftn, aten.fft_fft2, aten.fft_ifft2, aten.fft_rfft2,
                   aten.fft_irfft2, aten.fft_hfft, aten.fft_ihfft)
def other_fft(node: Node, ctx: TransferContext):
    """Multi-dimensional or low-level FFTs: every transformed axis mixes globally."""
    reach = ctx.reach(node.args[0])
    rank = len(ctx.shape(node.args[0]))
    dims = arg(node, 1, "dim")
    if dims is None or isinstance(dims, int) and node.target.overloadpacket in (
            aten.fft_hfft, aten.fft_ihfft):
        dims = arg(node, 2, "dim", -1)
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    dims = {norm_dim(d, rank) for d in dims} if dims != [None] else set(range(rank))
    out = ctx.out_shape()
    frames = {name: _global(f, ctx, name, out[f.dim]) if f.dim in dims else f
              for name, f in reach.frames.items()}
    return reach.with_frames(frames)


@register_transfer(aten.real, aten.imag, aten.view_as_real, aten.view_as_complex, aten.conj,
                   aten._conj, aten.conj_physical)
def complex_view(node: Node, ctx: TransferContext):
    return ctx.reach(node.args[0])


__all__ = ["TensorReach", "kernel_taps"]
