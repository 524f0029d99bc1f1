"""The static reach pass over the traced graph.

Walks the fx graph once in topological order, computing every tensor's
:class:`~archlint.reach.descriptor.TensorReach` with the transfer functions and storing it
in ``node.meta["archlint.reach"]`` (and the mixing it does in
``node.meta["archlint.reach.mix"]``). Residual branches meet in elementwise ops, where
reaches take their union (the maximum); chains compose windows with the jump; serial
steps follow the longest path. Nothing here depends on the traced length except where a
value is read at it on purpose (masks, unrolled loops), so the results hold for any n.

When there is no ATen graph (the ``symbolic_trace`` or hook front-ends), the classified
layers are composed as a chain in call order instead (:mod:`archlint.reach.chain`).
"""

from __future__ import annotations

import functools
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.fx import Node
from torch.utils._pytree import tree_flatten

from archlint.graph import ModelGraph
from archlint.reach import assemble as _assemble  # noqa: F401 - registers transfers
from archlint.reach import contract as _contract  # noqa: F401 - registers transfers
from archlint.reach import layout as _layout  # noqa: F401 - registers transfers
from archlint.reach import routing as _routing  # noqa: F401 - registers transfers
from archlint.reach import sequential as _sequential  # noqa: F401 - registers transfers
from archlint.reach import spectral as _spectral  # noqa: F401 - registers transfers
from archlint.reach import windows as _windows  # noqa: F401 - registers transfers
from archlint.reach.descriptor import FrameReach, TensorReach
from archlint.reach.transfer import (
    Mix,
    TransferContext,
    conservative,
    is_pointwise,
    pointwise,
    transfer_for,
)

META_REACH = "archlint.reach"
META_MIX = "archlint.reach.mix"

#: ops that touch no tensor data worth tracking
_IGNORED = {"_assert_scalar", "sym_constrain_range_for_size", "_assert_tensor_metadata",
            "sym_constrain_range", "_assert_async"}


@dataclass
class GraphReach:
    """The result of the static pass over one graph."""

    reach: dict[Node, Any]
    outputs: list[Node]
    frames: tuple[str, ...]
    unattributed: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    mixing: list[Node] = field(default_factory=list)

    def of(self, node: Node) -> TensorReach | None:
        """The reach of a node's tensor (of its first output for multi-output ops)."""
        found = self.reach.get(node)
        if isinstance(found, (tuple, list)):
            found = next((item for item in found if isinstance(item, TensorReach)), None)
        return found if isinstance(found, TensorReach) else None

    @property
    def primary(self) -> Node | None:
        """The first floating output that depends on the input (the model's prediction)."""
        candidates = [n for n in self.outputs if self.of(n) is not None]
        for node in candidates:
            value = node.meta.get("val")
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return node
        return candidates[0] if candidates else None


def frame_names(graph: ModelGraph) -> tuple[str, ...]:
    return ("h", "w") if graph.input_spec.spatial else ("n",)


def initial_reach(graph: ModelGraph, index: int, shape: tuple[int, ...]) -> TensorReach:
    """Reach of forward argument ``index``: identity along its sequence dim(s)."""
    dims = graph.input_spec.seq_dims
    seq = dims[index] if index < len(dims) else None
    if seq is None:
        return TensorReach({})
    if graph.input_spec.spatial:
        return TensorReach({"h": FrameReach.identity(seq, shape[seq]),
                            "w": FrameReach.identity(seq + 1, shape[seq + 1])})
    return TensorReach({"n": FrameReach.identity(seq, shape[seq])})


def propagate(graph: ModelGraph) -> GraphReach:
    """Run the transfer functions over ``graph.graph_module``."""
    gm = graph.graph_module
    reach: dict[Node, Any] = {}
    values = ConstantValues(gm, reach)
    ctx = TransferContext(reach, graph.trace_len, values)
    result = GraphReach(reach, [], frame_names(graph))
    placeholders = 0
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            value = node.meta.get("val")
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
            reach[node] = initial_reach(graph, placeholders, shape) if shape else None
            placeholders += 1
        elif node.op == "call_function":
            reach[node] = _visit(node, ctx, result)
        elif node.op == "output":
            result.outputs = [n for n in tree_flatten(node.args[0])[0] if isinstance(n, Node)]
    return result


def _visit(node: Node, ctx: TransferContext, result: GraphReach) -> Any:
    if node.target is operator.getitem or getattr(node.target, "__name__", "") == "getitem":
        source = ctx._reach.get(node.args[0])
        if isinstance(source, (tuple, list)) and isinstance(node.args[1], int):
            return source[node.args[1]] if node.args[1] < len(source) else None
        return source if isinstance(source, TensorReach) else None
    if not any(ctx.reach(a) is not None or isinstance(ctx._reach.get(a), tuple)
               for a in node.all_input_nodes):
        return None
    name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
    if name in _IGNORED:
        return None
    ctx.start(node)
    fn = transfer_for(node.target)
    if fn is None and is_pointwise(node.target):
        fn = pointwise
    if fn is None:
        result.unattributed[_op_name(node.target)] += 1
        fn = conservative
    try:
        out = fn(node, ctx)
    except Exception as exc:  # noqa: BLE001 - one odd op must not sink the analysis
        result.notes.append(f"{node.format_node()}: {type(exc).__name__}: {exc}; "
                            "handled conservatively")
        result.unattributed[_op_name(node.target)] += 1
        ctx.start(node)
        out = conservative(node, ctx)
    if ctx.mixes and _mixes_routed_rows(node, ctx):
        # rows of a mixture of experts are positions in the router's order: a window
        # or reduction over them reads positions anywhere (archlint.reach.routing)
        ctx.start(node)
        out = conservative(node, ctx)
    for text in ctx.notes:
        if text not in result.notes:
            result.notes.append(text)
    out = _count_steps(out, ctx)
    node.meta[META_REACH] = out
    if ctx.mixes:
        node.meta[META_MIX] = list(ctx.mixes)
        result.mixing.append(node)
    return out


def _mixes_routed_rows(node: Node, ctx: TransferContext) -> bool:
    routed = {name for a in node.all_input_nodes if ctx.reach(a) is not None
              for name, frame in ctx.reach(a).frames.items() if frame.routed is not None}
    return any(mix.frame in routed for mix in ctx.mixes)


def _count_steps(out: Any, ctx: TransferContext) -> Any:
    counted = [m for m in ctx.mixes if not m.detail.get("loop")
               and not m.detail.get("positional")]
    per_n = max((m.per_n for m in counted), default=0)
    steps = 1 if counted and per_n == 0 else 0
    loop = 1 if ctx.loop_step else 0
    if not (per_n or steps or loop):
        return out

    def bump(item):
        if isinstance(item, TensorReach):
            return item.with_frames(item.frames, serial=item.serial.plus(per_n, loop, steps))
        return item
    if isinstance(out, (tuple, list)):
        return tuple(bump(item) for item in out)
    return bump(out)


def _op_name(target: Any) -> str:
    packet = getattr(target, "overloadpacket", None)
    if packet is not None:
        return f"aten.{packet.__name__}"
    return getattr(target, "__name__", str(target))


class ConstantValues:
    """Concrete values of input-independent nodes at the trace length (masks, tables)."""

    _SHAPE_ONLY = {"zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
                   "new_ones", "new_empty", "new_full"}

    def __init__(self, gm: torch.fx.GraphModule, reach: dict[Node, Any]) -> None:
        self.gm = gm
        self.reach = reach
        self.memo: dict[Node, Any] = {}

    def __call__(self, node: Node) -> Any:
        if node not in self.memo:
            self.memo[node] = self._compute(node)
        return self.memo[node]

    def _compute(self, node: Node) -> Any:
        if node.op == "get_attr":
            try:
                return functools.reduce(getattr, node.target.split("."), self.gm)
            except AttributeError:
                return None
        if node.op != "call_function" or isinstance(self.reach.get(node), TensorReach):
            return None
        shape_only = getattr(node.target, "__name__", "").split(".")[0] in self._SHAPE_ONLY
        missing = []

        def load(arg):
            if not isinstance(arg, Node):
                return arg
            if shape_only and arg is node.args[0]:
                value = arg.meta.get("val")
                if isinstance(value, torch.Tensor):
                    return torch.zeros(value.shape, dtype=value.dtype)
            found = self(arg)
            if found is None and arg.op != "call_function" or found is None and \
                    isinstance(self.reach.get(arg), TensorReach):
                missing.append(arg)
            return found

        args = torch.fx.node.map_aggregate(node.args, load)
        kwargs = torch.fx.node.map_aggregate(node.kwargs, load)
        if missing:
            return None
        try:
            with torch.no_grad():
                return node.target(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a value is an optional refinement
            return None


def mixes_of(node: Node) -> list[Mix]:
    return node.meta.get(META_MIX, [])
