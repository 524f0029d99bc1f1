"""Read-only helpers over a traced graph that op handlers share.

The sequence axis of an intermediate tensor is recognised by its size: the graph was
traced at ``trace_len``, which is chosen so that it rarely equals a channel count (see
:data:`archlint.load.inputs.VALIDATION_LEN`). The reach analysis tracks the axis exactly;
classification only needs to know whether an op reduces or mixes along it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch.fx import Interpreter, Node

from archlint.graph import META_MODULE, ModelGraph

#: ops that only move, copy or reshape data: a producer chain is followed through them
PASS_THROUGH = frozenset({
    "aten.view", "aten.reshape", "aten._unsafe_view", "aten.unsqueeze", "aten.squeeze",
    "aten.expand", "aten.slice", "aten.clone", "aten.contiguous", "aten.to",
    "aten._to_copy", "aten.transpose", "aten.permute", "aten.t", "aten.detach",
    "aten.alias", "aten.lift_fresh_copy", "aten.type_as", "aten.flatten", "aten.unflatten",
    "aten.select", "aten.repeat", "getitem", "_getitem",
})
ELEMENTWISE_SCALE = frozenset({
    "aten.mul", "aten.div", "aten.add", "aten.sub", "aten.masked_fill", "aten.where",
    "aten.neg", "aten.to", "aten._to_copy",
})


def _name(target: Any) -> str:
    from archlint.classify.registry import op_name
    return op_name(target)


class GraphView:
    """The model graph with lazily computed concrete values at the trace length."""

    def __init__(self, graph: ModelGraph) -> None:
        self.graph = graph
        self.gm = graph.graph_module
        self.n = graph.trace_len
        self._values: dict[Node, Any] | None = None

    def nodes(self) -> Iterator[Node]:
        return iter(self.gm.graph.nodes)

    def module_path(self, node: Node) -> str:
        return node.meta.get(META_MODULE, "")

    def shape(self, node: Any) -> tuple[int, ...] | None:
        value = node.meta.get("val") if isinstance(node, Node) else None
        return tuple(value.shape) if isinstance(value, torch.Tensor) else None

    def seq_dims(self, node: Any) -> list[int]:
        shape = self.shape(node)
        return [i for i, size in enumerate(shape or ()) if size == self.n]

    def is_parameter(self, node: Any) -> bool:
        """True for weights and buffers and reshaped copies of them (``w.unsqueeze(1)``):
        values that do not depend on the input."""
        if not isinstance(node, Node):
            return False
        sources = [p for p in self.producers(node) if not (
            p.op == "call_function" and _name(p.target) in PASS_THROUGH)]
        return bool(sources) and all(p.op == "get_attr" for p in sources)

    def attr_value(self, node: Node) -> torch.Tensor | None:
        try:
            return functools.reduce(getattr, node.target.split("."), self.gm)
        except AttributeError:
            return None

    def producers(self, node: Any, through: frozenset[str] = PASS_THROUGH) -> Iterator[Node]:
        """``node`` and, transitively, the producers it is a reshaped copy of."""
        from archlint.classify.registry import op_name
        seen: set[Node] = set()
        stack = [node] if isinstance(node, Node) else []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            yield current
            if current.op == "call_function" and op_name(current.target) in through:
                stack.extend(a for a in current.all_input_nodes)

    def value(self, node: Node) -> Any:
        """The concrete value of ``node`` for the example input at ``trace_len``."""
        if self._values is None:
            self._values = _evaluate(self.graph)
        return self._values.get(node)


def _evaluate(graph: ModelGraph) -> dict[Node, Any]:
    """Run the graph once on real tensors at trace_len and keep every node's value."""
    values: dict[Node, Any] = {}

    class Recorder(Interpreter):
        def run_node(self, node: Node) -> Any:
            result = super().run_node(node)
            values[node] = result
            return result

    args = graph.input_spec.make(graph.trace_len, 1)
    placeholders = [n for n in graph.graph_module.graph.nodes if n.op == "placeholder"]
    try:
        with torch.no_grad():
            Recorder(graph.graph_module).run(*args[: len(placeholders)])
    except Exception:  # noqa: BLE001 - values are an optional refinement of classification
        return values
    return values
