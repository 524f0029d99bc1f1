"""Stage 3: tag every layer of a traced model with a :class:`LayerKind`.

1. Modules on the call path are classified by type (:mod:`.modules`); a module whose
   handler claims its children (``nn.MultiheadAttention``) hides its internals.
2. Ops outside classified modules are classified by ATen op (:mod:`.ops`): functional
   attention, hand-written ``softmax(QK^T)``, reductions over the sequence, scans.
3. Graph context refines both (:mod:`.refine`): causal padding, masks, positional
   tables, loops over time.
4. Ops that no handler knows and that are not pointwise or structural are listed in
   ``ModelGraph.unattributed``: never silently dropped.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import torch
from torch.fx import Node

from archlint.classify import modules as _modules  # noqa: F401 - registers handlers
from archlint.classify.biases import mark_position_biases
from archlint.classify.ops import fused_attention  # noqa: F401 - registers handlers
from archlint.classify.positions import position_tables, refine_embedding
from archlint.classify.refine import (
    cell_calls,
    position_loops,
    refine_attention_module,
    refine_convolution,
)
from archlint.classify.registry import module_handler, op_handler, op_name
from archlint.classify.view import PASS_THROUGH, GraphView
from archlint.graph import META_LAYER, META_SITE, Layer, ModelGraph
from archlint.kinds import LayerKind

__all__ = ["classify"]

#: ops that neither mix positions nor need a handler
STRUCTURAL = PASS_THROUGH | {
    "aten.linear", "aten.addmm", "aten.mm", "aten.layer_norm", "aten.native_layer_norm",
    "aten.rms_norm", "aten.group_norm", "aten.native_group_norm", "aten.batch_norm",
    "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_functional",
    "aten._native_batch_norm_legit_no_training", "aten.embedding", "aten.dropout",
    "aten.native_dropout", "aten.arange", "aten.zeros", "aten.ones", "aten.full",
    "aten.empty", "aten.zeros_like", "aten.ones_like", "aten.full_like", "aten.empty_like",
    "aten.scalar_tensor", "aten.split", "aten.split_with_sizes", "aten.chunk",
    "aten.unbind", "aten.cat", "aten.stack", "aten.copy", "aten.copy_", "aten.sym_size",
    "aten.new_zeros", "aten.new_ones", "aten.new_empty", "aten.tril", "aten.triu",
    "aten.constant_pad_nd", "aten.pad", "aten.index", "aten.gather", "aten.flip",
    "aten.roll", "aten.bernoulli", "aten.bernoulli_", "aten.rand", "aten.randn",
    "aten.lift_fresh_copy", "aten.item", "aten._assert_tensor_metadata",
    "aten.softmax", "aten._softmax", "aten._safe_softmax", "aten.log_softmax",
    "aten._log_softmax", "aten.bmm", "aten.matmul", "aten.einsum", "aten.baddbmm",
    "aten.conv1d", "aten.convolution", "aten.lstm_cell", "aten.gru_cell",
    "aten.rnn_tanh_cell", "aten.rnn_relu_cell", "aten.diff", "aten.masked_fill",
    "aten._assert_scalar", "aten.sym_constrain_range_for_size", "aten.unfold",
    "aten.upsample_nearest1d", "aten.repeat_interleave", "aten.cumsum",
    # a mixture of experts' routing (reach: archlint.reach.routing), and the
    # comparisons torch.export adds on its data-dependent sizes
    "aten.where", "aten.nonzero", "aten.argwhere", "aten.index_add", "aten.index_add_",
    "aten.index_put", "aten.index_put_", "aten.one_hot", "aten.topk",
    "aten.ge", "aten.le", "aten.lt", "aten.gt", "aten.eq",
    # torch-level names seen in symbolic_trace graphs (see registry.op_name)
    "aten.getattr", "aten.size", "aten.add", "aten.sub", "aten.mul", "aten.truediv",
    "aten.floordiv", "aten.neg", "aten.relu", "aten.gelu", "aten.tanh", "aten.sigmoid",
    "aten.contiguous", "aten.dim", "aten.float", "aten.long", "aten.int",
    # mask bookkeeping and inverse transforms (the forward FFT is the layer)
    "aten._local_scalar_dense", "aten.all", "aten.any", "aten.__and__", "aten.__or__",
    "aten.__invert__", "aten.logical_and", "aten.logical_or", "aten.logical_not",
    "aten.fft_irfft", "aten._fft_c2r", "aten.fft_ifft", "aten.fft_irfftn", "aten.fft_ifftn",
    "aten.real", "aten.imag", "aten.view_as_real", "aten.view_as_complex",
}


def classify(graph: ModelGraph) -> ModelGraph:
    """Fill ``graph.layers`` and ``node.meta["archlint.layer"]``; returns ``graph``."""
    view = GraphView(graph)
    graph.layers = _module_layers(graph, view)
    _tag_nodes(graph, view)
    graph.layers += _op_layers(graph, view)
    _refine(graph, view)
    graph.unattributed = _unattributed(view)
    return graph


def _called_modules(graph: ModelGraph, view: GraphView) -> set[str]:
    called: set[str] = {""}
    for node in view.nodes():
        for path, _ in (node.meta.get("nn_module_stack") or {}).values():
            called.add(path)
        if node.op == "call_module":
            prefix = node.target + "."
            called.add(node.target)
            called.update(p for p, _ in graph.module.named_modules() if p.startswith(prefix))
    return called


def _module_layers(graph: ModelGraph, view: GraphView) -> list[Layer]:
    called = _called_modules(graph, view)
    layers, claimed = [], []
    for path, module in graph.module.named_modules(remove_duplicate=False):
        if path not in called or any(path.startswith(c + ".") for c in claimed):
            continue
        handler = module_handler(module)
        found = handler(module) if handler is not None else None
        if found is None:
            continue
        if found.claims_children:
            claimed.append(path)
        layers.append(Layer(path, found.kind, type(module).__name__, dict(found.params),
                            graph.locations.get(path)))
    return layers


def _tag_nodes(graph: ModelGraph, view: GraphView) -> None:
    """Each node belongs to the deepest classified module on its path."""
    names = {layer.name for layer in graph.layers}
    for node in view.nodes():
        if node.op not in ("call_function", "call_module"):
            continue
        path = view.module_path(node)
        while True:
            if path in names:            # "" when the model itself is one layer (nn.LSTM)
                node.meta[META_LAYER] = path
                graph.layer(path).nodes.append(node.name)
                break
            if not path:
                break
            path = path.rpartition(".")[0]


def _op_layers(graph: ModelGraph, view: GraphView) -> list[Layer]:
    layers: list[Layer] = []
    counts: Counter = Counter()
    for node in view.nodes():
        if node.op != "call_function" or META_LAYER in node.meta:
            continue
        handler = op_handler(node.target)
        found = handler(node, view) if handler is not None else None
        if found is None:
            continue
        if found.kind.mixes_positions and not view.depends_on_input(node):
            continue                 # e.g. OPT's cumsum of a mask of ones: no data mixed
        if not view.reaches_output(node):
            continue                 # computed, then ignored
        module = view.module_path(node)
        companion = _same_module_attention(layers, module, found)
        if companion is not None:        # e.g. the normalizer cumsum of linear attention
            companion.nodes.append(node.name)
            node.meta[META_LAYER] = companion.name
            continue
        base = f"{module}:{op_name(node.target).split('.')[-1]}"
        counts[base] += 1
        name = base if counts[base] == 1 else f"{base}#{counts[base]}"
        anchor = found.anchor if found.anchor is not None else node
        location = _op_location(graph, module, anchor.meta.get(META_SITE)
                                or node.meta.get(META_SITE))
        layers.append(Layer(name, found.kind, op_name(node.target), dict(found.params),
                            location, [node.name]))
        node.meta[META_LAYER] = name
    return layers


def _op_location(graph: ModelGraph, module: str, site) -> object:
    """The call line when it is in the file that defines the calling module (the user's
    forward); else (a helper in a library, e.g. transformers' sdpa integration) the
    line where that module was constructed."""
    owner = graph.locations.get(module)
    if site is None:
        return owner
    if owner is None or not module:
        return site
    defining = sys.modules.get(type(graph.submodule(module)).__module__)
    filename = getattr(defining, "__file__", None)
    if filename and os.path.abspath(filename) == os.path.abspath(site.file):
        return site
    return owner


def _same_module_attention(layers: list[Layer], module: str, found) -> Layer | None:
    """Ops that are parts of one layer: the normalizer cumsum next to linear attention,
    the two FFTs of one long convolution."""
    if found.kind not in (LayerKind.SSM, LayerKind.POSITIONAL):
        return None
    for layer in layers:
        if layer.name.rpartition(":")[0] != module:
            continue
        if "scan" in found.params and layer.params.get("implementation") == "linear":
            return layer
        if layer.kind is found.kind and layer.params == found.params:
            return layer
    return None


def _refine(graph: ModelGraph, view: GraphView) -> None:
    for layer in list(graph.layers):
        if layer.kind is LayerKind.CONV:
            refine_convolution(layer, view)
        elif layer.kind is LayerKind.ATTENTION and layer.type_name == "MultiheadAttention":
            refine_attention_module(layer, view)
        elif layer.kind is LayerKind.EMBEDDING:
            refine_embedding(layer, view)
    _mark_loops(graph, view)
    _mark_positional_tables(graph, view)
    mark_position_biases(graph, view, _op_location)


def _mark_loops(graph: ModelGraph, view: GraphView) -> None:
    """Hand-written loops over time: a cell module called once per step, or a body that
    selects one position per iteration (the loop then belongs to its module)."""
    calls = cell_calls(view)
    repeated = {path for path, count in calls.items() if path and count >= max(2, view.n // 2)}
    cells = {path for path in repeated                     # the outermost repeated module
             if not any(path.startswith(other + ".") for other in repeated)}
    for path in sorted(cells):
        existing = [layer for layer in graph.layers if layer.name == path]
        if existing:
            existing[0].kind = LayerKind.RECURRENCE
            existing[0].params.update(loop=True, steps=calls[path])
            continue
        module = graph.submodule(path)
        graph.layers.append(Layer(path, LayerKind.RECURRENCE, type(module).__name__, {
            "cell": type(module).__name__, "num_layers": 1, "bidirectional": False,
            "loop": True, "steps": calls[path], "causal": True}, graph.locations.get(path)))
    looped: set[str] = set()
    for module, select, nonlinear in position_loops(view):
        parent = module + "." if module else ""
        if any(cell.startswith(parent) for cell in cells) or module in looped:
            continue            # the loop drives a cell module, or is already a layer
        looped.add(module)
        kind = LayerKind.RECURRENCE if nonlinear else LayerKind.SSM
        name = f"{module}:loop" if module else f"{type(graph.module).__name__}:loop"
        location = select.meta.get(META_SITE) or graph.locations.get(module)
        graph.layers.append(Layer(name, kind, "loop over time", {
            "loop": True, "steps": view.n, "causal": True}, location, [select.name]))


def _mark_positional_tables(graph: ModelGraph, view: GraphView) -> None:
    for table in position_tables(view):
        if any(layer.name == table.name for layer in graph.layers):
            continue
        # a buffer belongs to its module (where max_len is chosen); the root's is sliced
        location = (graph.locations.get(table.module) if table.module else None) \
            or table.access.meta.get(META_SITE)
        params = {"table": table.table, "max_len": table.max_len}
        if table.offset:
            params.update(rows=table.rows, offset=table.offset)
        graph.layers.append(Layer(table.name, LayerKind.POSITIONAL, "positional table",
                                  params, location, [table.access.name]))
        table.access.meta[META_LAYER] = table.name


def _unattributed(view: GraphView) -> list[str]:
    unknown: Counter = Counter()
    for node in view.nodes():
        if node.op != "call_function" or META_LAYER in node.meta:
            continue
        name = op_name(node.target)
        tags = getattr(node.target, "tags", ())
        if name in STRUCTURAL or torch.Tag.pointwise in tags or op_handler(node.target):
            continue
        unknown[name] += 1
    return [f"{name} x{count}" for name, count in sorted(unknown.items())]


def is_sequence_node(node: Node, view: GraphView) -> bool:
    return bool(view.seq_dims(node))
