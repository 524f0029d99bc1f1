"""Position biases added to attention scores: ALiBi and learned relative biases.

ALiBi (BLOOM, Falcon, MPT) gives positions to attention without a table of vectors: a
per-head slope times the distance to the key is added to the scores before the
softmax (``baddbmm(alibi, q, k)``, ``scores + alibi``, or the float mask handed to
``F.scaled_dot_product_attention``). T5 adds a bias looked up from a small learned
table of relative-position buckets instead. Both are found the same way: walking up
from the softmax (or SDPA's ``attn_mask``), the first term that does not depend on the
input, is computed from positions (``arange``/``cumsum``) and varies along the keys
(a plain mask holds two values: 0 and -inf).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.fx import Node

from archlint.classify.registry import op_name
from archlint.classify.view import ELEMENTWISE_SCALE, GraphView
from archlint.graph import META_LAYER, META_SITE, Layer, ModelGraph
from archlint.kinds import LayerKind

#: how far above the bias its positions may be computed
_POSITIONS_DEPTH = 24
#: ops whose inputs add a term to the scores
_ADDS = {"aten.add": (0, 1), "aten.sub": (0, 1), "aten.baddbmm": (0,)}


@dataclass(frozen=True)
class PositionBias:
    """One bias term and what it is made of."""

    node: Node
    scheme: str              # "alibi" | "relative"
    positions: Node          # the arange / cumsum it is computed from


def mark_position_biases(graph: ModelGraph, view: GraphView,
                         locate: Callable[[ModelGraph, str, object], object]) -> None:
    """Add a POSITIONAL layer per bias (or tag the positional table it is sliced from).

    ``locate(graph, module, call site)`` places a layer made of ops, as for every
    functional layer. The layer is named for the module that computes the positions
    (T5 computes its bias once, in the first block, and every block adds it)."""
    seen: set[Node] = set()
    for layer in graph.layers_of(LayerKind.ATTENTION):
        for bias in _biases_of(layer, view):
            if bias.node in seen:
                continue
            seen.add(bias.node)
            _record(graph, view, bias, locate)


def _record(graph: ModelGraph, view: GraphView, bias: PositionBias, locate) -> None:
    for producer in view.producers(bias.node):
        owner = producer.meta.get(META_LAYER)
        if owner is not None and graph.layer(owner).kind is LayerKind.POSITIONAL:
            graph.layer(owner).params["scheme"] = bias.scheme   # MPT's sliced ALiBi
            return
    module = view.module_path(bias.positions)
    name = f"{module}:{bias.scheme}"
    if any(layer.name == name for layer in graph.layers):
        return
    location = locate(graph, view.module_path(bias.node), bias.node.meta.get(META_SITE))
    graph.layers.append(Layer(name, LayerKind.POSITIONAL, f"{bias.scheme} bias", {
        "table": "computed", "scheme": bias.scheme, "max_len": None},
        location, [bias.node.name]))
    bias.node.meta.setdefault(META_LAYER, name)


def _biases_of(layer: Layer, view: GraphView) -> list[PositionBias]:
    names = set(layer.nodes)
    found = []
    for node in view.nodes():
        if node.name not in names or node.op != "call_function":
            continue
        name = op_name(node.target)
        if "scaled_dot_product" in name:
            mask = node.kwargs.get("attn_mask", node.args[3] if len(node.args) > 3 else None)
            terms = [mask]
        elif "softmax" in name:
            terms = _added_terms(node.args[0], view)
        else:
            continue
        for term in terms:
            bias = _bias(term, view)
            if bias is not None:
                found.append(bias)
    return found


def _added_terms(scores, view: GraphView) -> list[Node]:
    """Terms added to the scores between the score product and the softmax."""
    terms, stack, seen = [], [scores], set()
    while stack:
        node = stack.pop()
        if not isinstance(node, Node) or node in seen or node.op != "call_function":
            continue
        seen.add(node)
        if not view.depends_on_input(node):
            continue
        name = op_name(node.target)
        for index in _ADDS.get(name, ()):
            if index < len(node.args) and isinstance(node.args[index], Node):
                terms.append(node.args[index])
        if name in ELEMENTWISE_SCALE or name in _ADDS or name in (
                "aten.view", "aten.reshape", "aten._unsafe_view", "aten.expand"):
            stack.extend(node.all_input_nodes)
    return terms


def _bias(term, view: GraphView) -> PositionBias | None:
    """``term`` as a position bias, or None when it is not one."""
    if not isinstance(term, Node) or view.depends_on_input(term):
        return None
    value = view.value(term)
    if not (isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel()):
        return None
    finite = value[torch.isfinite(value) & (value > torch.finfo(value.dtype).min / 2)]
    if torch.unique(finite).numel() <= 2:
        return None                                   # a mask: keep / block
    positions, table = _origin(term)
    if positions is None:
        return None
    return PositionBias(term, "relative" if table else "alibi", positions)


def _origin(term: Node) -> tuple[Node | None, bool]:
    """(the positions it is computed from, looked up in a learned table on the way?)"""
    frontier, seen = [term], set()
    positions, table = None, False
    for _ in range(_POSITIONS_DEPTH):
        following = []
        for node in frontier:
            if node in seen:
                continue
            seen.add(node)
            name = op_name(node.target) if node.op == "call_function" else ""
            if positions is None and name in ("aten.arange", "aten.cumsum"):
                positions = node
            table |= name == "aten.embedding"
            following.extend(node.all_input_nodes)
        frontier = following
    return positions, table
