"""Layer kinds of functional ops found outside classified modules.

``F.scaled_dot_product_attention`` in a user's block, a hand-written
``softmax(q @ k^T) @ v``, ``x.mean(dim=1)``, ``F.max_pool1d``, a scan with ``cumsum``, a
long convolution via FFT: each is recognised by its ATen op and its arguments.
"""

from __future__ import annotations

import torch
from torch.fx import Node

from archlint.classify.masks import keep_matrix, mask_params
from archlint.classify.registry import Classification, op_name, register_op
from archlint.classify.view import ELEMENTWISE_SCALE, GraphView
from archlint.kinds import LayerKind

aten = torch.ops.aten

_SDPA = (aten.scaled_dot_product_attention, aten._scaled_dot_product_flash_attention_for_cpu,
         aten._scaled_dot_product_flash_attention, aten._scaled_dot_product_efficient_attention,
         aten._scaled_dot_product_cudnn_attention)


@register_op(*_SDPA)
def fused_attention(node: Node, view: GraphView) -> Classification:
    query = view.shape(node.args[0]) or ()
    params = {"heads": query[-3] if len(query) >= 3 else 1,
              "head_dim": query[-1] if query else None,
              "causal": False, "implementation": "fused"}
    is_causal = node.kwargs.get("is_causal", node.args[5] if len(node.args) > 5 else False)
    mask = node.kwargs.get("attn_mask", node.args[3] if len(node.args) > 3 else None)
    if is_causal:
        params.update(causal=True, mask="is_causal")
    elif isinstance(mask, Node):
        params.update(mask_params(keep_matrix(view.value(mask))))
    return Classification(LayerKind.ATTENTION, params)


@register_op(aten._softmax, aten.softmax, aten._safe_softmax)
def softmax(node: Node, view: GraphView) -> Classification | None:
    """``softmax(q @ k^T)`` over the key axis is materialized attention."""
    scores = _scores_matmul(node.args[0], view)
    if scores is None:
        return None
    shape = view.shape(node) or ()
    params = {"causal": False, "implementation": "materialized"}
    if len(shape) >= 2 and shape[-1] == shape[-2]:          # (..., heads, queries, keys)
        params["heads"] = shape[-3] if len(shape) >= 3 else 1
        params["head_dim"] = (view.shape(scores.args[0]) or (None,))[-1]
    elif view.n in shape[:-1] and shape[-1] < view.n:       # banded scores (Longformer)
        half = (shape[-1] - 1) // 2
        params.update(window=shape[-1], band=(half, half))
    keep = _masked_keep(node.args[0], view)
    if keep is not False:
        params.update(mask_params(keep))
    return Classification(LayerKind.ATTENTION, params, anchor=scores)


_MATMULS = ("aten.bmm", "aten.matmul", "aten.mm", "aten.baddbmm", "aten.einsum")
#: how far above a softmax the q @ k^T product may be (chunked attention copies and pads)
_SCORES_DEPTH = 16


def _scores_matmul(node, view: GraphView) -> Node | None:
    """The q @ k^T product of two activations that a softmax normalizes.

    Searched breadth-first above the softmax, not crossing ops with weights (a
    projection ends the search: the product behind it belongs to an earlier layer).
    Independent of n, since sequences may be downsampled before the attention.
    """
    frontier, seen = [node], set()
    for _ in range(_SCORES_DEPTH):
        following = []
        for current in frontier:
            if not isinstance(current, Node) or current in seen or current.op != "call_function":
                continue
            seen.add(current)
            name = op_name(current.target)
            inputs = current.all_input_nodes
            if "softmax" in name and current is not node:
                continue
            activations = [a for a in inputs if not view.is_parameter(a)]
            if name in _MATMULS and len(activations) >= 2:
                return current
            if len(activations) < len(inputs) and name not in ELEMENTWISE_SCALE:
                continue          # a weighted op: a projection, not part of the scores
            following.extend(activations)
        frontier = following
    return None


def _masked_keep(node, view: GraphView):
    """Keep-matrix of a masked_fill / additive mask between the scores and the softmax;
    False when there is no mask at all."""
    for producer in view.producers(node, through=ELEMENTWISE_SCALE):
        name = op_name(producer.target) if producer.op == "call_function" else ""
        if name == "aten.masked_fill":
            return keep_matrix(view.value(producer.args[1]), blocked_when_true=True)
        if name == "aten.where":
            return keep_matrix(view.value(producer.args[0]))
        if name == "aten.add":
            for other in producer.all_input_nodes:
                value = view.value(other)
                if (isinstance(value, torch.Tensor) and value.is_floating_point()
                        and value.dim() >= 2 and bool((value == float("-inf")).any())):
                    return keep_matrix(value)
    return False


@register_op(aten.cumsum, aten.cumprod, aten.logcumsumexp, aten._cummax_helper)
def scan(node: Node, view: GraphView) -> Classification | None:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    shape = view.shape(node) or ()
    if dim is None or not shape or shape[dim] != view.n:
        return None
    if not node.meta["val"].is_floating_point():
        return None                      # counting positions or mask entries, not a scan
    if _outer_product_upstream(node.args[0], view):
        dim = dim % len(shape)
        return Classification(LayerKind.ATTENTION, {
            "heads": shape[dim - 1] if dim >= 2 else 1,
            "head_dim": shape[dim + 1] if len(shape) > dim + 1 else None,
            "causal": True, "implementation": "linear"})
    return Classification(LayerKind.SSM, {"scan": op_name(node.target).split(".")[-1],
                                          "causal": True})


def _outer_product_upstream(node, view: GraphView) -> bool:
    """phi(k)^T v style products of two activations (linear attention's state)."""
    for producer in view.producers(node):
        if producer.op == "call_function" and op_name(producer.target) in (
                "aten.mul", "aten.einsum", "aten.bmm", "aten.matmul"):
            operands = [a for a in producer.all_input_nodes if not view.is_parameter(a)]
            if len(operands) >= 2:
                return True
    return False


@register_op(aten.bmm, aten.matmul, aten.einsum)
def sequence_contraction(node: Node, view: GraphView) -> Classification | None:
    """``phi(k)^T @ v``: a product of two activations that sums over the sequence axis."""
    operands = [a for a in node.all_input_nodes if not view.is_parameter(a)]
    if len(operands) < 2:
        return None
    in_seq = all(view.seq_dims(a) for a in operands)
    out_seq = view.seq_dims(node)
    if not in_seq or out_seq:
        return None
    if any(_feeds_softmax(user) for user in node.users):
        return None
    return Classification(LayerKind.ATTENTION, {"causal": False, "implementation": "linear"})


def _feeds_softmax(node: Node) -> bool:
    return node.op == "call_function" and "softmax" in op_name(node.target)


@register_op(aten.mean, aten.sum, aten.amax, aten.amin, aten.max, aten.min, aten.logsumexp,
             aten.std, aten.var, aten.norm, aten.prod)
def reduction(node: Node, view: GraphView) -> Classification | None:
    """A reduction over the sequence axis mixes every position into one.

    ``torch.min(a, b)`` / ``torch.max(a, b)`` (the ``.other`` overloads) share the op
    with the reductions but act elementwise: their second argument is a tensor, not a
    dimension, and they mix nothing."""
    source = node.args[0]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    in_shape = view.shape(source)
    if in_shape is None or dims is None or isinstance(dims, bool):
        return None
    dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return None                      # elementwise min/max of two tensors
    dims = [d % len(in_shape) for d in dims]
    if not any(in_shape[d] == view.n for d in dims):
        return None
    return Classification(LayerKind.GLOBAL_MIX, {"op": op_name(node.target).split(".")[-1]})


@register_op(aten.max_pool1d, aten.max_pool2d, aten.avg_pool1d, aten.avg_pool2d,
             aten.max_pool2d_with_indices, aten.max_pool1d_with_indices)
def functional_pooling(node: Node, view: GraphView) -> Classification:
    kernel = tuple(node.args[1]) if len(node.args) > 1 else ()
    stride = tuple(node.args[2]) if len(node.args) > 2 and node.args[2] else kernel
    if kernel and kernel[-1] >= view.n:
        return Classification(LayerKind.GLOBAL_MIX, {"op": "max_pool over the whole length"})
    return Classification(LayerKind.POOL, {"kernel_size": kernel, "stride": stride})


@register_op(aten.convolution, aten.conv1d, aten.conv2d)
def functional_convolution(node: Node, view: GraphView) -> Classification:
    weight = node.args[1]
    shape = view.shape(weight) or ()
    kernel = shape[2:]
    if not view.is_parameter(weight) or (kernel and kernel[-1] >= view.n):
        return Classification(LayerKind.SSM, {"long_convolution": True, "kernel_size": kernel})
    stride = tuple(node.args[3]) if len(node.args) > 3 else (1,)
    padding = tuple(node.args[4]) if len(node.args) > 4 else (0,)
    dilation = tuple(node.args[5]) if len(node.args) > 5 else (1,)
    return Classification(LayerKind.CONV, {"kernel_size": tuple(kernel), "stride": stride,
                                           "dilation": dilation, "padding": padding})


@register_op(aten._fft_r2c, aten.fft_rfft, aten.fft_fft, aten._fft_c2c)
def fourier(node: Node, view: GraphView) -> Classification | None:
    """An FFT along the sequence axis is a long (global) convolution."""
    if op_name(node.target) in ("aten.fft_rfft", "aten.fft_fft"):   # (x, n, dim, norm)
        dims = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else -1)
    else:                                                              # (x, dim, ...)
        dims = node.args[1]
    shape = view.shape(node.args[0]) or ()
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    if not shape or not any(shape[d] == view.n for d in dims):
        return None
    return Classification(LayerKind.SSM, {"long_convolution": True, "via": "fft"})


@register_op(aten.cos, aten.sin)
def rotary_or_sinusoidal(node: Node, view: GraphView) -> Classification | None:
    """cos/sin of position indices computed in forward: rotary or sinusoidal positions,
    defined for any n (no table to outgrow)."""
    if not _derives_from_positions(node.args[0], view):
        return None
    return Classification(LayerKind.POSITIONAL, {"table": "computed", "max_len": None})


def _derives_from_positions(node, view: GraphView, depth: int = 12) -> bool:
    """Whether ``node`` is computed from ``arange`` within ``depth`` ops."""
    frontier, seen = [node], set()
    for _ in range(depth):
        following = []
        for current in frontier:
            if not isinstance(current, Node) or current in seen:
                continue
            seen.add(current)
            if current.op == "call_function" and op_name(current.target) == "aten.arange":
                return True
            following.extend(current.all_input_nodes)
        frontier = following
    return False


@register_op(aten.lstm, aten.gru, aten.rnn_tanh, aten.rnn_relu)
def functional_recurrence(node: Node, view: GraphView) -> Classification:
    name = op_name(node.target).split(".")[-1]
    return Classification(LayerKind.RECURRENCE, {"cell": name.replace("rnn_tanh", "rnn")})
