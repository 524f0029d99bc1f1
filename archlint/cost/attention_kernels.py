"""Hidden allocations of the fused attention kernels and of LayerNorm's backward on CPU.

Measured with ``torch.profiler(profile_memory=True)`` on torch 2.13 and read in
``aten/src/ATen/native/transformers`` and ``native/cpu/FlashAttentionKernel.cpp``.
"""

from __future__ import annotations

from typing import Any

import torch

from archlint.cost.kernels import TRANSIENTS, Shapes, register

aten = torch.ops.aten
Phases = tuple[list[Shapes], Shapes]


@register(TRANSIENTS, aten._native_multi_head_attention)
def _mha_transients(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    embed_dim: int, num_head: int, *args: Any, **kwargs: Any) -> Phases:
    """q/k/v and the (B, h, n_q, n_k) scores, even with ``need_weights=False``."""
    batch, n_q, _ = query.shape
    n_k = key.shape[1]
    dtype = query.dtype
    attention = [((batch, n_q, embed_dim), dtype), ((batch, n_k, 2 * embed_dim), dtype),
                 ((batch, num_head, n_q, n_k), dtype)]
    mask = args[4] if len(args) > 4 else kwargs.get("mask")
    attention += _masked_softmax(mask, (batch, num_head, n_q, n_k), dtype)
    need_weights = args[5] if len(args) > 5 else kwargs.get("need_weights", True)
    # with need_weights the averaged weights are allocated while the scores are alive
    return ([], attention) if need_weights else ([attention], [])


@register(TRANSIENTS, aten._transformer_encoder_layer_fwd)
def _encoder_layer_transients(src: torch.Tensor, embed_dim: int, num_heads: int,
                              *args: Any, **kwargs: Any) -> Phases:
    """Attention phase (q/k/v, scores), then feed-forward phase (hidden of d_ff)."""
    batch, n, _ = src.shape
    d_ff = args[11].shape[0]              # ffn_weight_1: (d_ff, embed_dim)
    dtype = src.dtype
    ffn = [((batch, n, embed_dim), dtype), ((batch, n, d_ff), dtype),
           ((batch, n, embed_dim), dtype)]
    attention = [((batch, n, 3 * embed_dim), dtype), ((batch, num_heads, n, n), dtype)]
    mask = args[15] if len(args) > 15 else kwargs.get("mask")
    attention += _masked_softmax(mask, (batch, num_heads, n, n), dtype)
    return [attention, ffn], []


def _masked_softmax(mask: Any, scores: tuple[int, ...], dtype: torch.dtype) -> Shapes:
    """With a mask the fused softmax also holds the mask as bool and a second score copy."""
    return [] if mask is None else [(scores, torch.bool), (scores, dtype)]


def _flash_blocks(q_len: int, kv_len: int) -> tuple[int, int]:
    """Query and key block sizes of the CPU flash kernel (FlashAttentionKernel.cpp)."""
    q_split = 256 if q_len >= 768 else 64 if q_len >= 192 else 32
    return min(q_split, q_len), min(512, kv_len)


def _accumulate(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@register(TRANSIENTS, aten._scaled_dot_product_flash_attention_for_cpu)
def _flash_transients(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      *args: Any, **kwargs: Any) -> Phases:
    """Per-thread blocks: scores q_block×kv_block, row max and sum, output accumulator.

    NB: fp16 with oneDNN packing also reorders K and V outside the c10 allocator; not counted.
    """
    q_block, kv_block = _flash_blocks(query.shape[2], key.shape[2])
    threads = torch.get_num_threads()
    per_thread = q_block * kv_block + 2 * q_block + q_block * value.shape[3]
    held = [((threads, per_thread), _accumulate(query.dtype))]
    if query.dtype in (torch.bfloat16, torch.float16):
        held.append(((threads, q_block, kv_block), query.dtype))
    return [], held


@register(TRANSIENTS, aten._scaled_dot_product_flash_attention_for_cpu_backward)
def _flash_backward_transients(grad_out: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                               *args: Any, **kwargs: Any) -> Phases:
    """Per-thread score and score-gradient blocks, row sums, and a contiguous grad_out."""
    q_block, kv_block = _flash_blocks(query.shape[2], key.shape[2])
    threads = torch.get_num_threads()
    accumulate = _accumulate(query.dtype)
    held = [((threads, 2 * q_block * kv_block), accumulate), ((threads, q_block), accumulate)]
    if query.dtype in (torch.bfloat16, torch.float16):
        held.append(((threads, 2 * q_block * kv_block), query.dtype))
    if not grad_out.transpose(1, 2).is_contiguous():
        held.append((tuple(grad_out.shape), grad_out.dtype))
    return [], held


@register(TRANSIENTS, aten.native_layer_norm_backward)
def _layer_norm_backward_transients(grad_out: torch.Tensor, x: torch.Tensor,
                                    normalized_shape: Any, *args: Any, **kwargs: Any) -> Phases:
    """Per-thread partial sums for the weight and bias gradients: (2, threads, N)."""
    mask = args[4] if len(args) > 4 else kwargs.get("output_mask", (True, True, True))
    if not (mask[1] or mask[2]):
        return [], []
    size = 1
    for dim in normalized_shape:
        size *= dim
    return [], [((2, torch.get_num_threads(), size), x.dtype)]
