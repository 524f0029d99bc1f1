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
        self._unpadded: list[dict[Node, Any]] | None = None
        self._input_dependent: dict[Node, bool] = {}
        self._live: set[Node] | None = None

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
            self._values = _evaluate(self.graph, self.graph.input_spec.make(self.n, 1))
        return self._values.get(node)

    def peak(self, node: Node) -> float | None:
        """The largest entry ``node`` takes for the example input and, for token ids,
        for two inputs that repeat one token each: a padding token can be at most one
        of them, so the maximum is that of an input without padding."""
        if self._unpadded is None:
            self._unpadded = [_evaluate(self.graph, args) for args in self._repeated_tokens()]
        values = [self.value(node)] + [found.get(node) for found in self._unpadded]
        peaks = [float(v.max()) for v in values
                 if isinstance(v, torch.Tensor) and v.numel() and not v.is_complex()]
        return max(peaks, default=None)

    def _repeated_tokens(self) -> list[tuple[Any, ...]]:
        if self.graph.input_spec.kind != "tokens":
            return []
        args = self.graph.input_spec.make(self.n, 1)
        ids = args[0]
        choices = sorted({int(ids.min()), int(ids.max())})
        return [(torch.full_like(ids, token), *args[1:]) for token in choices]

    def reaches_output(self, node: Node) -> bool:
        """Whether the model's output depends on ``node`` (a value computed and then
        ignored, like Falcon's rotary tables when it uses ALiBi, does not)."""
        if self._live is None:
            outputs = [n for n in self.gm.graph.nodes if n.op == "output"]
            self._live, stack = set(), list(outputs)
            while stack:
                current = stack.pop()
                if current not in self._live:
                    self._live.add(current)
                    stack.extend(current.all_input_nodes)
        return node in self._live

    def depends_on_input(self, node: Any) -> bool:
        """Whether ``node`` is computed from the model's input (a placeholder), rather
        than from weights, buffers and constants alone."""
        if not isinstance(node, Node):
            return False
        stack = [node]
        while stack:                       # iterative: graphs are deeper than the stack
            current = stack.pop()
            if current in self._input_dependent:
                continue
            pending = [a for a in current.all_input_nodes if a not in self._input_dependent]
            if pending:
                stack.append(current)
                stack.extend(pending)
                continue
            self._input_dependent[current] = current.op == "placeholder" or any(
                self._input_dependent[a] for a in current.all_input_nodes)
        return self._input_dependent[node]


def _evaluate(graph: ModelGraph, args: tuple[Any, ...]) -> dict[Node, Any]:
    """Run the graph once on real tensors (``args``) and keep every node's value."""
    values: dict[Node, Any] = {}

    class Recorder(Interpreter):
        def run_node(self, node: Node) -> Any:
            result = super().run_node(node)
            values[node] = result
            return result

    placeholders = [n for n in graph.graph_module.graph.nodes if n.op == "placeholder"]
    try:
        with torch.no_grad():
            Recorder(graph.graph_module).run(*args[: len(placeholders)])
    except Exception:  # noqa: BLE001 - values are an optional refinement of classification
        return values
    return values
