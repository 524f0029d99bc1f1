"""Which fused attention kernel a GPU runs, and what it keeps: CUDA's SDPA on fake CPU tensors.

``F.scaled_dot_product_attention`` on CUDA picks a backend at run time
(``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp``, ``select_sdp_backend``):
the first of the priority order whose constraints all hold. The constraints that depend
on the call (not on how torch was built) are reproduced by :func:`choose_backend`:

- **flash**: no ``attn_mask``; q, k, v of one head dim ≤ 256; sm 8.0–12.1; fp16/bf16;
  ``is_causal`` only with n_q = n_k; on sm 8.6/8.9/12.x no training with head dim in
  (192, 224], or above 224 with dropout;
- **memory-efficient**: sm 5.0–12.1; fp16/fp32 (and bf16 from sm 8.0); head dims
  divisible by the GEMM alignment (8 for fp16/bf16, 4 for fp32 from sm 8.0); masks and
  dropout allowed;
- **cuDNN** (first in the order on sm 9.0/10.x, as with the cuDNN > 9.15 of torch's
  CUDA 12.8+ wheels): fp16/bf16; dropout a multiple of 1/16; head dim ≤ 256 and a
  multiple of 8, and for training ≤ 128 (or 192/128, 256/256);
- **math**: everything else; it materializes the (B, h, n_q, n_k) scores and, for
  fp16/bf16 inputs, computes them in float32.

Every kernel then runs *as the CUDA kernel* on fake CPU tensors: its ATen op
(``_scaled_dot_product_flash_attention``, ``_efficient_attention``, ``_cudnn_attention``,
``_scaled_dot_product_attention_math``) has a meta function that returns exactly what
the kernel returns and autograd saves (flash: the output and a float32 log-sum-exp per
head and row, no scores), so the memory tracker counts the GPU's bytes, not a formula.

:func:`cuda_attention` puts this in place of ``torch.nn.functional.scaled_dot_product_attention``
for the duration of a fake run (``nn.MultiheadAttention`` and Hugging Face models call it
through that name); a model that bound the function under another name at import keeps
the CPU kernel.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.module_tracker import ModuleTracker

from archlint.cost.devices import Device
from archlint.cost.trackers import _innermost

aten = torch.ops.aten
_HALF = (torch.float16, torch.bfloat16)
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16",
                torch.float32: "float32", torch.float64: "float64"}


@dataclass(frozen=True)
class KernelChoice:
    """The attention kernel one module runs on the device, and why."""

    module: str                  # module path that called SDPA ("" for the root)
    backend: str                 # flash | efficient | cudnn | math
    reason: str                  # the facts that decided it
    remedy: str = ""             # for math: the smallest change that gets a fused kernel

    def to_dict(self) -> dict[str, str]:
        return {"module": self.module, "backend": self.backend, "reason": self.reason,
                "remedy": self.remedy}


@dataclass(frozen=True)
class Call:
    """What the backend choice depends on, read off one SDPA call."""

    shape_q: tuple[int, ...]
    shape_k: tuple[int, ...]
    shape_v: tuple[int, ...]
    dtype: torch.dtype
    has_mask: bool
    dropout: float
    is_causal: bool
    requires_grad: bool

    @property
    def head_dims(self) -> tuple[int, int, int]:
        return self.shape_q[-1], self.shape_k[-1], self.shape_v[-1]

    def describe(self) -> str:
        d_q, _, d_v = self.head_dims
        head = f"head dim {d_q}" if d_q == d_v else f"head dims {d_q}/{d_v}"
        mask = "a mask" if self.has_mask else ("is_causal" if self.is_causal else "no mask")
        dropout = f"dropout {self.dropout:g}" if self.dropout else "no dropout"
        grad = "training" if self.requires_grad else "inference"
        return f"{_DTYPE_NAMES.get(self.dtype, str(self.dtype))}, {head}, {mask}, {dropout}, {grad}"


def priority(device: Device) -> tuple[str, ...]:
    """The order CUDA tries the backends in on this device (``priority_order``)."""
    if device.sm in ((9, 0), (10, 0), (10, 3)):
        return ("cudnn", "flash", "efficient", "math")
    return ("flash", "efficient", "math")


def choose_backend(device: Device, call: Call) -> tuple[str, str]:
    """(backend, reason): the first backend of the priority order whose constraints hold;
    the reason names the call's facts and, for a slower backend, why the faster failed."""
    refusals = []
    for backend in priority(device):
        if backend == "math":
            break
        why_not = _CHECKS[backend](device, call)
        if why_not is None:
            break
        refusals.append(f"{backend}: {why_not}")
    else:
        backend = "math"
    return backend, "; ".join([call.describe(), *refusals])


def remedy(device: Device, call: Call) -> str:
    """For a call that runs the math kernel: the first single change (checked with
    :func:`choose_backend`) after which a fused kernel runs, or "" if none does."""
    d_q, d_k, d_v = call.head_dims
    half = (torch.bfloat16, torch.float16) if device.sm[0] >= 8 else (torch.float16,)
    padded = tuple(-(-d // 8) * 8 for d in (d_q, d_k, d_v))
    variants = [(f"compute attention in {_DTYPE_NAMES[dtype]} (autocast or --dtype "
                 f"{_DTYPE_NAMES[dtype]})", replace(call, dtype=dtype)) for dtype in half]
    if call.has_mask:
        variants.append(("pass is_causal=True instead of an explicit attn_mask (if the mask "
                         "is causal)", replace(call, has_mask=False, is_causal=True)))
    if call.dropout:
        variants.append(("set the attention dropout to 0.0",
                         replace(call, dropout=0.0)))
    if padded != (d_q, d_k, d_v):
        variants.append((f"use a head dim that is a multiple of 8 (e.g. {padded[0]})",
                         replace(call, shape_q=call.shape_q[:-1] + padded[:1],
                                 shape_k=call.shape_k[:-1] + padded[1:2],
                                 shape_v=call.shape_v[:-1] + padded[2:])))
    for text, variant in variants:
        backend, _ = choose_backend(device, variant)
        if backend != "math":
            return f"{text}: then {backend} runs"
    return ""


def _common(call: Call) -> str | None:
    if len(call.shape_q) != 4 or len(call.shape_k) != 4 or len(call.shape_v) != 4:
        return "needs 4-D (B, h, n, d) inputs"
    if call.shape_q[1] % call.shape_k[1]:
        return "query heads must be a multiple of key heads"
    return None


def _flash(device: Device, call: Call) -> str | None:
    d_q, d_k, d_v = call.head_dims
    if (problem := _common(call)) is not None:
        return problem
    if call.has_mask:
        return "no arbitrary attn_mask (use is_causal=True)"
    if not (d_q == d_k == d_v and d_q <= 256):
        return "q, k, v need one head dim <= 256"
    if not (8, 0) <= device.sm <= (12, 1):
        return f"needs sm 8.0 or newer (this device is sm {device.sm[0]}.{device.sm[1]})"
    consumer = (8, 6) <= device.sm <= (8, 9) or (12, 0) <= device.sm <= (12, 1)
    if consumer and call.requires_grad and not (
            d_q <= 192 or (call.dropout == 0 and d_q > 224)):
        return "no training with head dim in (192, 224] (or > 224 with dropout) on this sm"
    if call.is_causal and call.shape_q[2] != call.shape_k[2]:
        return "is_causal needs as many queries as keys"
    if call.dtype not in _HALF:
        return "needs float16 or bfloat16"
    return None


def _alignment(device: Device, dtype: torch.dtype) -> int:
    """``minimum_gemm_alignment``: elements a head dim must be a multiple of."""
    half = dtype in _HALF
    tensor_cores = device.sm[0] >= 8 or (device.sm[0] >= 7 and half)
    alignment = 4 if device.sm[0] >= 8 else 1
    return max(alignment, 128 // (16 if half else 32)) if tensor_cores else alignment


def _efficient(device: Device, call: Call) -> str | None:
    d_q, d_k, d_v = call.head_dims
    if (problem := _common(call)) is not None:
        return problem
    if not (5, 0) <= device.sm <= (12, 1):
        return "needs sm 5.0 or newer"
    alignment = _alignment(device, call.dtype)
    if d_q != d_k or d_q % alignment or d_v % alignment:
        return f"head dims must be multiples of {alignment}"
    allowed = (torch.float16, torch.float32) + ((torch.bfloat16,) if device.sm[0] >= 8 else ())
    if call.dtype not in allowed:
        return "needs float16 or float32" + (" (or bfloat16 from sm 8.0)"
                                              if device.sm[0] < 8 else "")
    return None


def _cudnn(device: Device, call: Call) -> str | None:
    d_q, _, d_v = call.head_dims
    if (problem := _common(call)) is not None:
        return problem
    if call.dtype not in _HALF:
        return "needs float16 or bfloat16"
    if call.dropout * 16 != math.floor(call.dropout * 16):
        return "dropout must be a multiple of 1/16"
    if d_q > 256 or d_v > 256 or d_q % 8 or d_v % 8:
        return "head dims must be multiples of 8, at most 256"
    if call.requires_grad and not (max(d_q, d_v) <= 128 or (d_q, d_v) in ((192, 128),
                                                                          (256, 256))):
        return "training needs head dims <= 128 (or 192/128, 256/256)"
    if call.shape_k[2] == 1:
        return "needs more than one key"
    return None


_CHECKS = {"flash": _flash, "efficient": _efficient, "cudnn": _cudnn}


def _read_call(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attn_mask: Any, dropout_p: float, is_causal: bool) -> Call:
    return Call(tuple(query.shape), tuple(key.shape), tuple(value.shape), query.dtype,
                attn_mask is not None, float(dropout_p), bool(is_causal),
                torch.is_grad_enabled() and any(
                    t.requires_grad for t in (query, key, value)))


def _expand_heads(key: torch.Tensor, value: torch.Tensor,
                  heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GQA for the math path: key/value heads repeated to the query's (as ATen does)."""
    groups = heads // key.shape[-3]
    if groups == 1:
        return key, value
    return (key.repeat_interleave(groups, dim=-3), value.repeat_interleave(groups, dim=-3))


def _bias(attn_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask as the additive float bias the fused kernels take
    (``convert_boolean_attn_mask``); the efficient kernel pads its last dim to 16."""
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.where(attn_mask, 0.0, float("-inf")).to(dtype)
    pad = -attn_mask.shape[-1] % 16
    if pad:
        attn_mask = F.pad(attn_mask, (0, pad))[..., :attn_mask.shape[-1]]
    return attn_mask


def run_backend(backend: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attn_mask: Any, dropout_p: float, is_causal: bool, scale: Any,
                requires_grad: bool) -> torch.Tensor:
    """The CUDA kernel's own op (its meta function on fake tensors); its output."""
    if backend == "flash":
        return aten._scaled_dot_product_flash_attention(
            query, key, value, dropout_p, is_causal, False, scale=scale)[0]
    if backend == "efficient":
        key, value = _expand_heads(key, value, query.shape[-3])
        return aten._scaled_dot_product_efficient_attention(
            query, key, value, _bias(attn_mask, query.dtype), requires_grad, dropout_p,
            is_causal, scale=scale)[0]
    if backend == "cudnn":
        key, value = _expand_heads(key, value, query.shape[-3])
        return aten._scaled_dot_product_cudnn_attention(
            query, key, value, _bias(attn_mask, query.dtype), requires_grad, dropout_p,
            is_causal, False, scale=scale)[0]
    return aten._scaled_dot_product_attention_math(
        query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale,
        enable_gqa=query.shape[-3] != key.shape[-3])[0]


class CudaAttention:
    """``F.scaled_dot_product_attention`` as the device runs it; records each choice."""

    def __init__(self, device: Device, autocast_dtype: torch.dtype | None) -> None:
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.choices: list[KernelChoice] = []
        self.modules = ModuleTracker()

    def __call__(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 attn_mask: Any = None, dropout_p: float = 0.0, is_causal: bool = False,
                 scale: Any = None, enable_gqa: bool = False) -> torch.Tensor:
        if self.autocast_dtype is not None and query.dtype == torch.float32:
            # CUDA autocast's lower-precision list holds scaled_dot_product_attention
            query, key, value = (t.to(self.autocast_dtype) for t in (query, key, value))
        call = _read_call(query, key, value, attn_mask, dropout_p, is_causal)
        backend, reason = choose_backend(self.device, call)
        if not enable_gqa and call.shape_q[-3:-2] != call.shape_k[-3:-2]:
            backend, reason = "math", f"{reason}; key heads differ without enable_gqa"
        choice = KernelChoice(_innermost(self.modules.parents), backend, reason,
                              remedy(self.device, call) if backend == "math" else "")
        if choice not in self.choices:
            self.choices.append(choice)
        return run_backend(backend, query, key, value, attn_mask, dropout_p, is_causal,
                           scale, call.requires_grad)


_SDPA = torch._C._nn.scaled_dot_product_attention


def _bindings() -> list[tuple[dict, str]]:
    """Every module global bound to ``scaled_dot_product_attention`` (``F``'s own and
    ``from torch.nn.functional import scaled_dot_product_attention as sdpa`` in a model
    file or library): ``(module dict, name)``."""
    found = []
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if module_name == __name__ or module_name.startswith("torch._C") \
                or not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if value is _SDPA:
                found.append((namespace, name))
    return found


@contextlib.contextmanager
def cuda_attention(device: Device, autocast_dtype: torch.dtype | None) -> Iterator[CudaAttention]:
    """For the duration: SDPA calls run the kernel ``device`` would pick."""
    attention = CudaAttention(device, autocast_dtype)
    bindings, original = _bindings(), _SDPA
    for namespace, name in bindings:
        namespace[name] = attention
    try:
        with attention.modules:
            yield attention
    finally:
        for namespace, name in bindings:
            namespace[name] = original
