"""Refinements that need the graph around a module, not just the module.

- convolution padding as applied: ``F.pad`` before the conv and a chomp (right trim)
  after it decide whether a conv is causal and whether it changes the length;
- attention masks passed to ``nn.MultiheadAttention`` (causal, sliding window);
- a cell module called once per time step is a hand-written recurrence loop.
"""

from __future__ import annotations

from collections import Counter

from torch.fx import Node

from archlint.classify.ops import fused_attention, softmax
from archlint.classify.registry import op_name
from archlint.classify.view import GraphView
from archlint.graph import META_LAYER, Layer

_PAD_OPS = {"aten.constant_pad_nd", "aten.pad", "aten.reflection_pad1d",
            "aten.replication_pad1d", "aten.zero_pad1d"}


def layer_nodes(view: GraphView, layer: Layer) -> list[Node]:
    return [n for n in view.nodes() if n.meta.get(META_LAYER) == layer.name
            or (n.op == "call_module" and n.target == layer.name)]


def refine_convolution(layer: Layer, view: GraphView) -> None:
    """Effective left/right padding on the sequence axis, trim, and causality."""
    convs = [n for n in layer_nodes(view, layer) if op_name(n.target) in
             ("aten.convolution", "aten.conv1d", "aten.conv2d")]
    if not convs or len(layer.params["kernel_size"]) != 1 or layer.params.get("transposed"):
        return
    conv = convs[0]
    padding = layer.params["padding"]
    if isinstance(padding, str):
        k, d = layer.params["kernel_size"][0], layer.params["dilation"][0]
        padding = ((k - 1) * d // 2,) if padding == "same" else (0,)
    left = right = padding[0]
    source = conv.args[0]
    if isinstance(source, Node) and op_name(source.target) in _PAD_OPS:
        pads = source.args[1]
        left, right = left + pads[0], right + pads[1]
    trim = _right_trim(conv, view)
    span = layer.params["dilation"][0] * (layer.params["kernel_size"][0] - 1)
    stride = layer.params["stride"][0]
    growth = left + right - span - trim       # output length - input length (stride 1)
    layer.params.update(pad_left=left, pad_right=right, trim=trim)
    layer.params["causal"] = stride == 1 and span - left <= 0 and growth <= 0
    if stride == 1 and growth > 0:
        layer.params["length_change"] = f"+{growth}"


def _right_trim(conv: Node, view: GraphView) -> int:
    """Positions removed from the end of the conv output by a slice ``x[..., :-t]``."""
    for user in conv.users:
        if op_name(user.target) == "aten.slice":
            dim, start, end = (list(user.args[1:4]) + [None, None, None])[:3]
            shape = view.shape(conv) or ()
            if shape and dim in (-1, len(shape) - 1) and (start in (0, None)) and end is not None:
                length = shape[-1]
                stop = end if end >= 0 else length + end
                if stop < length:
                    return length - stop
    return 0


def refine_attention_module(layer: Layer, view: GraphView) -> None:
    """Causality / window of an attention module from the attention op inside it."""
    for node in layer_nodes(view, layer):
        name = op_name(node.target)
        if "scaled_dot_product" in name:
            found = fused_attention(node, view)
        elif "softmax" in name:
            found = softmax(node, view)
        else:
            continue
        if found is not None:
            for key in ("causal", "window", "mask", "implementation"):
                if key in found.params:
                    layer.params[key] = found.params[key]
            return


def cell_calls(view: GraphView) -> Counter:
    """How many separate calls each module path received (an unrolled loop repeats)."""
    calls: Counter = Counter()
    previous: set[str] = set()
    for node in view.nodes():
        if node.op not in ("call_function", "call_module"):
            continue
        stack = node.meta.get("nn_module_stack") or {}
        current = set(stack.keys())
        for key in current - previous:
            calls[stack[key][0]] += 1
        previous = current
    return calls


def position_loops(view: GraphView) -> list[tuple[str, Node, bool]]:
    """Loops over time written in a forward: >= n/2 ``select``s of one tensor along an
    axis of length n. Returns (module path, first select node, nonlinear body?)."""
    by_source: dict[tuple[Node, int], list[Node]] = {}
    for node in view.nodes():
        if node.op == "call_function" and op_name(node.target) in ("aten.select", "aten.slice"):
            source, dim = node.args[0], node.args[1] if len(node.args) > 1 else 0
            shape = view.shape(source) or ()
            if shape and shape[dim] == view.n and op_name(node.target) == "aten.select":
                by_source.setdefault((source, dim), []).append(node)
    loops = []
    for (_, _), selects in by_source.items():
        if len(selects) >= max(2, view.n // 2):
            body_ops = {op_name(n.target) for n in view.nodes() if n.op == "call_function"
                        and view.module_path(n) == view.module_path(selects[0])}
            nonlinear = bool(body_ops & {"aten.tanh", "aten.sigmoid", "aten.relu", "aten.gelu",
                                         "aten.silu", "aten.lstm_cell", "aten.gru_cell"})
            loops.append((view.module_path(selects[0]), selects[0], nonlinear))
    return loops
