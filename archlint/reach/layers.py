"""The per-layer running table (Distill-style: layer, R, stride) and the causality leak.

Rows are the layers that move information between positions, in graph order; each row
reads the reach of the layer's last node, so R is the running receptive field after it.
The leak search walks back from a non-causal output through non-causal tensors to the
first layer that lets the future in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from torch.fx import Node

from archlint.graph import META_LAYER, META_MODULE, META_SITE, Layer, ModelGraph, SourceLocation
from archlint.reach.descriptor import Expr, FrameReach
from archlint.reach.hops import INF
from archlint.reach.measures import Field, causality, dependency_path, longest_path, receptive_field
from archlint.reach.static import GraphReach, mixes_of
from archlint.reach.transfer import Mix

_KINDS = {"window": "conv", "pool": "pool", "attention": "attention", "global": "global_mix",
          "scan": "scan", "recurrence": "recurrence"}


@dataclass
class LayerRow:
    """One row of the running table."""

    name: str
    kind: str
    location: SourceLocation | None
    layer: Layer | None
    fields: dict[str, Field]
    jump: Fraction | None
    dependency_path: float | None         # L(span), or L(n-1) when no span was given
    longest_path: Expr
    serial_steps: Expr
    reach_left: float                     # this layer's own hop
    reach_right: float
    causal: bool | None
    order_blind: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    node: Node | None = None
    effective_receptive_field: dict[str, Any] | None = None


def row_key(node: Node, root: str) -> str:
    """Rows are module paths; ops of the root module are named ``Class:op``."""
    module = node.meta.get(META_MODULE) or ""
    if module:
        return module
    packet = getattr(node.target, "overloadpacket", None)
    return f"{root}:{packet.__name__ if packet is not None else node.name}"


def layer_rows(graph: ModelGraph, result: GraphReach, target_len: int,
               span: int | None) -> list[LayerRow]:
    groups: dict[str, list[Node]] = {}
    root = type(graph.module).__name__
    for node in result.mixing:
        key = row_key(node, root)
        if key in groups and not node.meta.get(META_MODULE):
            count = sum(1 for k in groups if k == key or k.startswith(key + "#"))
            key = f"{key}#{count + 1}"
        groups.setdefault(key, []).append(node)
    rows = []
    for key, nodes in groups.items():
        last = nodes[-1]
        reach = result.of(last)
        if reach is None:
            continue
        mixes = [m for n in nodes for m in mixes_of(n)]
        rows.append(_row(graph, key, nodes, last, reach, mixes, target_len, span))
    return rows


def _row(graph, key, nodes, last, reach, mixes: list[Mix], target_len, span) -> LayerRow:
    trace_len = graph.trace_len
    fields = {name: receptive_field(f, trace_len) for name, f in reach.frames.items()}
    primary = _primary_frame(reach.frames)
    layer = _graph_layer(graph, last)
    module = last.meta.get(META_MODULE) or ""
    location = graph.locations.get(module) or (layer.location if layer else None) or \
        last.meta.get(META_SITE)
    distance = span - 1 if span else target_len - 1
    kind = layer.kind.value if layer else _KINDS.get(mixes[-1].kind, mixes[-1].kind)
    verdict = causality(primary, trace_len) if primary is not None else None
    detail = {}
    for mix in mixes:
        detail.update({k: v for k, v in mix.detail.items() if k != "order_blind"})
    return LayerRow(
        name=key, kind=kind, location=location, layer=layer,
        fields=fields, jump=primary.jump if primary is not None and primary.dim is not None
        else None,
        dependency_path=dependency_path(primary, distance) if primary is not None else None,
        longest_path=longest_path(primary, target_len) if primary is not None else Expr(),
        serial_steps=reach.serial.expr(trace_len),
        reach_left=max(m.left for m in mixes), reach_right=max(m.right for m in mixes),
        causal=None if verdict is None else verdict.causal,
        order_blind=any(m.detail.get("order_blind") for m in mixes),
        detail=detail, node=last)


def _primary_frame(frames: dict[str, FrameReach]) -> FrameReach | None:
    return next(iter(frames.values()), None)


def _graph_layer(graph: ModelGraph, node: Node) -> Layer | None:
    name = node.meta.get(META_LAYER)
    if name:
        for layer in graph.layers:
            if layer.name == name:
                return layer
    module = node.meta.get(META_MODULE)
    for layer in graph.layers:
        if module and layer.name == module:
            return layer
    return None


def find_leak(graph: ModelGraph, result: GraphReach, output: Node) -> Node | None:
    """The earliest node on a non-causal path to ``output`` whose inputs were causal."""
    trace_len = graph.trace_len
    verdicts: dict[Node, bool] = {}

    def causal(node: Node) -> bool | None:
        if node not in verdicts:
            reach = result.of(node)
            frame = _primary_frame(reach.frames) if reach else None
            found = causality(frame, trace_len) if frame is not None else None
            verdicts[node] = None if found is None else found.causal
        return verdicts[node]

    if causal(output) is not False:
        return None
    entries, seen, stack = [], set(), [output]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        parents = [a for a in node.all_input_nodes if result.of(a) is not None]
        leaky = [a for a in parents if causal(a) is False]
        if not leaky:
            entries.append(node)
        stack.extend(leaky)
    order = {n: i for i, n in enumerate(graph.graph_module.graph.nodes)}
    return min(entries, key=order.get) if entries else None


def row_of(rows: list[LayerRow], node: Node | None) -> LayerRow | None:
    """The table row a node belongs to (by module path)."""
    if node is None:
        return None
    module = node.meta.get(META_MODULE) or ""
    for row in rows:
        if row.node is node or (module and row.name == module):
            return row
    return None


__all__ = ["LayerRow", "layer_rows", "find_leak", "row_of", "INF"]
