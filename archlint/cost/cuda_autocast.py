"""CUDA autocast's casting rules on fake CPU tensors.

``torch.autocast("cuda")`` and ``torch.autocast("cpu")`` agree on what runs in lower
precision (convolutions, ``linear``, ``matmul``/``mm``/``bmm``/``addmm``/``baddbmm``,
attention), and a CPU fake run keeps CPU autocast for those. They disagree on what is
forced to float32: CUDA's list (``AT_FORALL_FP32`` and ``AT_FORALL_FP32_SET_OPT_DTYPE``
in ``aten/src/ATen/autocast_mode.h``) holds the norms, softmax, the reductions and the
pointwise transcendental ops, CPU's almost none of them. The difference is memory:
under CUDA autocast a LayerNorm of a bf16 activation computes (and autograd keeps) a
float32 copy of its input and returns float32, which the next ``linear`` casts back.

:class:`CudaAutocastFp32` adds that list on top of CPU autocast: a torch-function mode
that casts the floating-point tensor arguments of those ops to float32 before they run,
as the Autocast dispatch key does (the cast is differentiable and seen by autograd).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

_HALF = (torch.float16, torch.bfloat16)


def _functions() -> frozenset[Any]:
    """The Python-level entry points of CUDA autocast's float32 ops."""
    names = {
        torch: ("acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2",
                "log1p", "reciprocal", "rsqrt", "sinh", "tan", "pow", "layer_norm",
                "native_layer_norm", "group_norm", "cosine_similarity", "dist", "pdist",
                "cdist", "renorm", "logsumexp", "prod", "softmax", "log_softmax",
                "cumprod", "cumsum", "sum", "norm", "frobenius_norm", "nuclear_norm"),
        torch.Tensor: ("acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10",
                       "log2", "log1p", "reciprocal", "rsqrt", "sinh", "tan", "pow",
                       "logsumexp", "prod", "softmax", "log_softmax", "cumprod", "cumsum",
                       "sum", "norm", "renorm"),
        F: ("softplus", "layer_norm", "group_norm", "cosine_similarity",
            "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss",
            "kl_div", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
            "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss",
            "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits",
            "softmax", "log_softmax", "cross_entropy", "pdist"),
    }
    return frozenset(getattr(owner, name) for owner, group in names.items()
                     for name in group if hasattr(owner, name))


FP32_OPS = _functions()
#: ``fp32_set_opt_dtype``: these take ``dtype=float32`` instead of a cast of their input
SET_OPT_DTYPE = frozenset(f for f in FP32_OPS if getattr(f, "__name__", "") in (
    "softmax", "log_softmax", "cumsum", "cumprod", "sum", "prod"))


def _to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in _HALF:
        return value.float()
    return value


class CudaAutocastFp32(TorchFunctionMode):
    """Under CPU autocast: run CUDA autocast's float32 ops in float32."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001,ANN204
        kwargs = kwargs or {}
        if func in FP32_OPS and torch.is_autocast_enabled("cpu"):
            first = args[0] if args else None
            if func in SET_OPT_DTYPE and isinstance(first, torch.Tensor):
                if first.dtype in _HALF and kwargs.get("dtype") is None:
                    kwargs = {**kwargs, "dtype": torch.float32}
            else:
                args, kwargs = tree_map(_to_float, (args, kwargs))
        return func(*args, **kwargs)
