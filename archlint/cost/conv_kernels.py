"""Hidden allocations of CPU convolutions, by the backend ATen picks for the shapes.

Fitted to profiler measurements of 1-D and 2-D convolutions on torch 2.13
(``torch._C._select_conv_backend`` tells which backend runs):

- ``Slow2d``: im2col columns for the whole batch, forward and backward;
- ``SlowDilated2d``: columns for one sample at a time (and a bias-sized buffer backward);
- ``Mkldnn``: oneDNN copies a 1-D or ≥16-channel input and the weight (a dilated
  convolution uses a gemm scratchpad instead) and keeps a second output-sized buffer
  while converting the result back; backward it reorders the gradient and pads the
  channels of input and weight to 16.

A non-contiguous input is first copied, on every backend.
"""

from __future__ import annotations

from typing import Any

import torch

from archlint.cost.kernels import TRANSIENTS, Shapes, as_bytes, register

aten = torch.ops.aten


def _conv_parts(x: torch.Tensor, weight: torch.Tensor, out_shape: Any,
                args: tuple[Any, ...]) -> dict[str, Any]:
    """Sizes (bytes) the backends' hidden allocations are made of."""
    stride, padding, dilation, transposed, output_padding, groups = args
    backend = torch._C._select_conv_backend(x, weight, None, list(stride), list(padding),
                                            list(dilation), transposed, list(output_padding),
                                            groups, None)
    size = x.element_size()
    kernel = 1
    for k in weight.shape[2:]:
        kernel *= k
    positions = 1
    for k in out_shape[2:]:
        positions *= k
    blocked_in = -(-x.shape[1] // 16) * 16                 # oneDNN pads channels to 16
    return {
        "backend": backend.name, "x": x.numel() * size, "w": weight.numel() * size,
        "out": out_shape[0] * out_shape[1] * positions * size,
        "bias": out_shape[1] * size,
        "columns": x.shape[1] // groups * kernel * positions * size,     # im2col, one sample
        "batch": x.shape[0], "blocked": x.shape[1] >= 16, "one_d": x.dim() == 3,
        "x_pad": x.numel() // x.shape[1] * blocked_in * size,
        "w_pad": weight.numel() // weight.shape[1] * blocked_in * size,
        "copy": 0 if x.is_contiguous() else x.numel() * size,
        "dilated": any(d > 1 for d in dilation),
    }


@register(TRANSIENTS, aten.convolution)
def _conv_transients(x: torch.Tensor, weight: torch.Tensor, bias: Any, *args: Any,
                     **kwargs: Any) -> tuple[list[Shapes], Shapes]:
    part = _conv_parts(x, weight, _conv_out_shape(x, weight, args), args[:6])
    if part["backend"] == "Slow2d":
        hidden = part["batch"] * part["columns"] + part["copy"]
    elif part["backend"] == "SlowDilated2d":
        hidden = part["columns"] + part["copy"]
    elif part["backend"] == "Mkldnn":
        reorders = (part["x"] if part["one_d"] or part["blocked"] else 0) + part["w"]
        if part["dilated"]:
            reorders = min(reorders, part["batch"] * part["columns"])
        hidden = max(reorders + part["copy"], part["out"])
    else:
        hidden = 0
    return [], as_bytes(hidden)


@register(TRANSIENTS, aten.convolution_backward)
def _conv_backward_transients(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                              bias_sizes: Any, *args: Any,
                              **kwargs: Any) -> tuple[list[Shapes], Shapes]:
    mask = args[6]
    part = _conv_parts(x, weight, tuple(grad_out.shape), args[:6])
    kept = (part["x"] if mask[0] else 0) + (part["w"] if mask[1] else 0) + \
        (part["bias"] if mask[2] else 0)
    if part["backend"] == "Slow2d":
        hidden = part["batch"] * part["columns"] + part["copy"]
    elif part["backend"] == "SlowDilated2d":
        hidden = part["columns"] + part["bias"] + part["copy"]
    elif part["backend"] == "Mkldnn":
        padded = part["out"] + part["w_pad"] + part["x_pad"] - kept if mask[0] else 0
        hidden = max(padded, part["out"] + part["x"]) + part["copy"]
    else:
        hidden = 0
    return [], as_bytes(hidden)


def _conv_out_shape(x: torch.Tensor, weight: torch.Tensor,
                    args: tuple[Any, ...]) -> tuple[int, ...]:
    stride, padding, dilation, transposed, output_padding, groups = args[:6]
    if transposed:
        sizes = [(size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, s, p, d, k, op in
                 zip(x.shape[2:], stride, padding, dilation, weight.shape[2:], output_padding)]
        return (x.shape[0], weight.shape[1] * groups, *sizes)
    sizes = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, s, p, d, k in
             zip(x.shape[2:], stride, padding, dilation, weight.shape[2:])]
    return (x.shape[0], weight.shape[0], *sizes)
