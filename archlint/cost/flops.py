"""FLOPs per module, forward and backward, with the ops PyTorch's counter misses.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and convolutions by ATen op.
Measured on torch 2.13 with fake CPU tensors it counts 0 for:

- CPU SDPA (``_scaled_dot_product_flash_attention_for_cpu`` and its backward),
- ``nn.LSTM`` on CPU (one ``mkldnn_rnn_layer`` op per layer and direction),
- the ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention`` eval fast paths
  (``_transformer_encoder_layer_fwd``, ``_native_multi_head_attention``).

The formulas below fill those gaps in the counter's own convention (2 FLOPs per
multiply-add, matmuls only, ``NB`` where an approximation is made); ``nn.GRU``/``nn.RNN``
on CPU run as per-step ``mm`` ops the counter already sees. :class:`FlopTally` also
splits out the attention share: FLOPs of ops that read or write an n×n tensor, plus
the n² part of the fused attention ops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    sdpa_backward_flop_count,
    sdpa_flop_count,
    shape_wrapper,
)
from torch.utils.module_tracker import ModuleTracker

from archlint.cost.memory import PairwiseRule

aten = torch.ops.aten

#: archlint's formulas: op -> f(*shapes, out_shape=...) -> FLOPs (FlopCounterMode convention)
FORMULAS: dict[Any, Callable[..., int]] = {}
#: the part of a fused op's FLOPs that is quadratic in n (attention scores and A·V)
ATTENTION_PART: dict[Any, Callable[..., int]] = {}
#: gates per recurrent cell, by oneDNN/cuDNN RNN mode number
RNN_GATES = {0: 1, 1: 1, 2: 4, 3: 3}


def formula(op: Any, attention: Callable[..., int] | None = None,
            ) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register a FLOP formula (and, for fused attention ops, its n² part)."""
    def decorate(function: Callable[..., int]) -> Callable[..., int]:
        if op in FORMULAS:
            raise RuntimeError(f"duplicate FLOP formula for {op}")
        FORMULAS[op] = function
        if attention is not None:
            ATTENTION_PART[op] = shape_wrapper(attention)
        return function
    return decorate


def _whole_sdpa(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


@formula(aten._scaled_dot_product_flash_attention_for_cpu, attention=_whole_sdpa)
def cpu_sdpa(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
             **kwargs: Any) -> int:
    """QKᵀ and A·V: 4·B·h·n_q·n_k·d. NB: a causal mask is not discounted (as upstream)."""
    return sdpa_flop_count(query, key, value)


def _whole_sdpa_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any,
                         out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


@formula(aten._scaled_dot_product_flash_attention_for_cpu_backward, attention=_whole_sdpa_backward)
def cpu_sdpa_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any,
                      out_shape: Any = None, **kwargs: Any) -> int:
    """Score recomputation plus four gradient matmuls, as upstream's flash backward."""
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _rnn_layer(input_shape: Any, w_ih: Any, w_hh: Any) -> int:
    rows = 1
    for size in input_shape[:-1]:
        rows *= size                                   # steps × batch
    gate_rows, inputs = w_ih
    return 2 * rows * gate_rows * (inputs + w_hh[1])    # x·W_ihᵀ and h·W_hhᵀ per step


@formula(aten.mkldnn_rnn_layer)
def rnn_layer(input_shape: Any, w_ih: Any, w_hh: Any, *args: Any, out_shape: Any = None,
              **kwargs: Any) -> int:
    """One layer and direction: 2·n·B·G·H·(I + H) with G gates (LSTM 4, GRU 3, RNN 1).

    NB: elementwise gate math is not counted, as upstream does not count it for Linear.
    """
    return _rnn_layer(input_shape, w_ih, w_hh)


@formula(aten.mkldnn_rnn_layer_backward)
def rnn_layer_backward(input_shape: Any, w_ih: Any, w_hh: Any, *args: Any, out_shape: Any = None,
                       **kwargs: Any) -> int:
    """Gradients for the input, the hidden state and both weights: twice the forward."""
    return 2 * _rnn_layer(input_shape, w_ih, w_hh)


def _encoder_attention(src: Any, embed_dim: int, *args: Any, out_shape: Any = None,
                       **kwargs: Any) -> int:
    batch, n = src[0], src[1]
    return 4 * batch * n * n * embed_dim


@formula(aten._transformer_encoder_layer_fwd, attention=_encoder_attention)
def encoder_layer(src: Any, embed_dim: int, num_heads: int, qkv_weight: Any, qkv_bias: Any,
                  proj_weight: Any, proj_bias: Any, use_gelu: bool, norm_first: bool, eps: float,
                  norm_weight_1: Any, norm_bias_1: Any, norm_weight_2: Any, norm_bias_2: Any,
                  ffn_weight_1: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """In-projection 6·B·n·E², scores and A·V 4·B·n²·E, out-projection 2·B·n·E², FFN 4·B·n·E·F."""
    batch, n = src[0], src[1]
    d_ff = ffn_weight_1[0]
    tokens = batch * n
    return (6 * tokens * embed_dim ** 2 + 4 * tokens * n * embed_dim
            + 2 * tokens * embed_dim ** 2 + 4 * tokens * embed_dim * d_ff)


def _mha_attention(query: Any, key: Any, value: Any, embed_dim: int, *args: Any,
                   out_shape: Any = None, **kwargs: Any) -> int:
    return 4 * query[0] * query[1] * key[1] * embed_dim


@formula(aten._native_multi_head_attention, attention=_mha_attention)
def native_mha(query: Any, key: Any, value: Any, embed_dim: int, num_head: int, *args: Any,
               out_shape: Any = None, **kwargs: Any) -> int:
    """Q, K, V and out projections 2·B·(2·n_q + 2·n_k)·E², scores and A·V 4·B·n_q·n_k·E."""
    batch, n_q, n_k = query[0], query[1], key[1]
    projections = 2 * batch * (2 * n_q + 2 * n_k) * embed_dim ** 2
    return projections + 4 * batch * n_q * n_k * embed_dim


#: the GPU attention kernels (:mod:`archlint.cost.sdpa` runs them on fake tensors): their
#: FLOPs are upstream's formulas, and all of them are attention
for _op in (aten._scaled_dot_product_flash_attention,
            aten._scaled_dot_product_flash_attention_backward,
            aten._scaled_dot_product_efficient_attention,
            aten._scaled_dot_product_efficient_attention_backward,
            aten._scaled_dot_product_cudnn_attention,
            aten._scaled_dot_product_cudnn_attention_backward):
    ATTENTION_PART[_op] = flop_registry[_op]


class _ForwardHooksOnly(ModuleTracker):
    """``ModuleTracker`` that hooks no gradient of what runs inside backward.

    Activation checkpointing (``torch.utils.checkpoint``) runs a block's forward again
    during backward; ModuleTracker would register a multi-grad hook on the recomputed
    outputs, whose handle holds their ``grad_fn``s, and with them every tensor the
    recomputed graph saved, until the step ends: the count of FLOPs would change the
    memory it is measured beside (+66% on a checkpointed block stack). Inside backward
    the module stack is left alone too (the recompute stops early, before the post-hooks
    of the modules it was in would pop them): recomputed FLOPs count to the module whose
    backward is running."""

    def _fw_pre_hook(self, mod, input) -> None:  # noqa: A002,ANN001
        if torch._C._current_graph_task_id() == -1:
            super()._fw_pre_hook(mod, input)

    def _fw_post_hook(self, mod, input, output) -> None:  # noqa: A002,ANN001
        if torch._C._current_graph_task_id() == -1:
            super()._fw_post_hook(mod, input, output)


class FlopTally(FlopCounterMode):
    """``FlopCounterMode`` with archlint's formulas and an attention (n²) subtotal."""

    def __init__(self, rule: PairwiseRule) -> None:
        super().__init__(display=False, custom_mapping=dict(FORMULAS))
        self.mod_tracker = _ForwardHooksOnly()
        self.rule = rule
        self.attention = 0

    def _count_flops(self, func_packet, out, args, kwargs):  # noqa: ANN001,ANN202
        out = super()._count_flops(func_packet, out, args, kwargs)
        if func_packet in self.flop_registry:
            if func_packet in ATTENTION_PART:
                self.attention += ATTENTION_PART[func_packet](*args, **kwargs, out_val=out)
            elif self._pairwise(args, out):
                self.attention += self.flop_registry[func_packet](*args, **kwargs, out_val=out)
        return out

    def _pairwise(self, args: Any, out: Any) -> bool:
        modules = [name.partition(".")[2] for name in self.mod_tracker.parents if name != "Global"]
        return any(isinstance(t, torch.Tensor) and self.rule.matches(t.shape, modules or [""])
                   for t in tree_flatten((args, out))[0])

    def module_totals(self) -> dict[str, int]:
        """FLOPs per module path (inclusive of submodules); ``""`` is the whole model."""
        totals: dict[str, int] = {}
        for name, per_op in self.get_flop_counts().items():
            if name == "Global":
                totals[""] = sum(per_op.values())
            elif "." in name:
                totals[name.partition(".")[2]] = sum(per_op.values())
        return totals
