"""Positional tables and their length limits.

A table of positions limits the length a model can run at when it is indexed or sliced
by position:

- an ``nn.Embedding`` looked up with position indices (a learned table). Its indices
  may be shifted: OPT and BART add 2 to the positions (``nn.Embedding(max + 2, d)``),
  RoBERTa numbers them from ``padding_idx + 1``. The shift is read from the indices the
  model computed at the trace length (largest index minus the last position), so the
  limit is ``rows - offset``: OPT's 2050 rows hold 2048 positions;
- a fixed table that does not depend on the input, indexed by positions (GPT-J's and
  CodeGen's 2048-row sin/cos buffer, ``embed_positions[position_ids]``) or sliced to the
  sequence length (``self.pe[:, : x.size(1)]``, an axial table expanded and
  concatenated before the slice, MPT's ALiBi bias built for ``max_seq_len``). A table
  computed in forward whose size is a multiple of the traced length (±1) was computed
  for that length and is no limit (a trace length that divides a real limit would hide
  it: the limit is then missed, never invented).

Rotary and sinusoidal positions computed for n in forward have no table and no limit
(:func:`archlint.classify.ops.rotary_or_sinusoidal`); ALiBi and relative biases added
to the attention scores are :mod:`archlint.classify.biases`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.fx import Node

from archlint.classify.registry import op_name
from archlint.classify.view import PASS_THROUGH, GraphView
from archlint.graph import META_LAYER, Layer
from archlint.kinds import LayerKind

#: ops that keep "these are positions" when they shift, scale or convert indices
_POSITION_ARITHMETIC = PASS_THROUGH | {"aten.add", "aten.sub", "aten.rsub", "aten.mul",
                                       "aten.type_as", "aten.alias"}
#: ops that look rows of a table up by an index tensor: op -> (table arg, dim, index arg)
_LOOKUPS = {"aten.index": (0, 0, 1), "aten.index_select": (0, 1, 2),
            "aten.gather": (0, 1, 2), "aten.embedding": (0, 0, 1)}


@dataclass(frozen=True)
class PositionTable:
    """A fixed table indexed or sliced by position, found in the graph."""

    name: str                # parameter/buffer name, or "<module>:table" when computed
    module: str              # module path that owns the table ("" for the root)
    rows: int                # rows along the position axis
    offset: int              # index of position 0 (0 for slices)
    access: Node             # the slice or lookup node
    table: str               # "buffer" (sliced) | "indexed"

    @property
    def max_len(self) -> int:
        """The longest sequence whose positions all fall inside the table."""
        return self.rows - self.offset


def is_positions(indices, view: GraphView) -> bool:
    """Indices made by ``arange``, a buffer equal to ``arange``, or a running count
    (``cumsum`` of a mask, as RoBERTa, Longformer and OPT number positions)."""
    for producer in view.producers(indices, through=_POSITION_ARITHMETIC):
        if producer.op == "call_function" and op_name(producer.target) in (
                "aten.arange", "aten.cumsum"):
            return True
        if producer.op == "get_attr":
            value = view.attr_value(producer)
            if (isinstance(value, torch.Tensor) and value.dim() >= 1
                    and not value.is_floating_point()):
                row = value.reshape(-1, value.shape[-1])[0]
                if torch.equal(row, torch.arange(row.numel(), dtype=row.dtype)):
                    return True
    return False


def index_offset(indices: Node, view: GraphView) -> int:
    """The table row that position 0 reads: the largest index the model computed minus
    the last position. The maximum is taken over inputs without padding tokens too
    (a padding token lowers RoBERTa's running count), see :meth:`GraphView.peak`."""
    shape = view.shape(indices) or ()
    largest = view.peak(indices)
    if not shape or largest is None:
        return 0
    return max(0, int(largest) - (shape[-1] - 1))


def refine_embedding(layer: Layer, view: GraphView) -> None:
    """An embedding looked up with position indices is a learned positional table."""
    for node in _layer_nodes(view, layer):
        if node.op == "call_module":
            indices = node.args[0] if node.args else None
        elif op_name(node.target) == "aten.embedding":
            indices = node.args[1]
        else:
            continue
        if is_positions(indices, view):
            rows = layer.params["num_embeddings"]
            offset = index_offset(indices, view) if isinstance(indices, Node) else 0
            layer.kind = LayerKind.POSITIONAL
            layer.params = {"table": "learned", "max_len": rows - offset,
                            "embedding_dim": layer.params["embedding_dim"]}
            if offset:
                layer.params.update(rows=rows, offset=offset)
            return


def _layer_nodes(view: GraphView, layer: Layer) -> list[Node]:
    return [n for n in view.nodes() if n.meta.get(META_LAYER) == layer.name
            or (n.op == "call_module" and n.target == layer.name)]


def position_tables(view: GraphView) -> list[PositionTable]:
    """Fixed floating tables sliced to the sequence length or indexed by positions."""
    found = []
    for node in view.nodes():
        if node.op != "call_function" or META_LAYER in node.meta:
            continue
        name = op_name(node.target)
        if name == "aten.slice":
            table = _sliced(node, view)
        elif name in _LOOKUPS:
            table = _looked_up(node, view, *_LOOKUPS[name])
        else:
            continue
        if table is not None:
            found.append(table)
    return found


def _sliced(node: Node, view: GraphView) -> PositionTable | None:
    """``table[:, :n]`` (or ``[-n:]``) of a fixed table longer than the trace length."""
    source = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else 0
    full, out = view.shape(source) or (), view.shape(node) or ()
    if not (full and out) or out[dim] != view.n or full[dim] <= view.n:
        return None
    return _fixed_table(source, node, view, full[dim], 0, "buffer")


def _looked_up(node: Node, view: GraphView, table_arg: int, dim_arg: int,
               index_arg: int) -> PositionTable | None:
    """``table[positions]``, ``index_select``/``gather`` of a fixed table by positions."""
    if len(node.args) <= max(table_arg, index_arg):
        return None
    source, indices = node.args[table_arg], node.args[index_arg]
    dim = node.args[dim_arg] if dim_arg != table_arg else 0
    if isinstance(indices, (list, tuple)):             # aten.index: one entry per dim
        dim = next((i for i, entry in enumerate(indices) if entry is not None), 0)
        indices = indices[dim]
    if not isinstance(indices, Node) or not isinstance(dim, int):
        return None
    if not view.seq_dims(indices) or not is_positions(indices, view):
        return None
    full = view.shape(source) or ()
    if not full:
        return None
    rows = full[dim % len(full)]
    return _fixed_table(source, node, view, rows, index_offset(indices, view), "indexed")


def _follows_length(rows: int, n: int) -> bool:
    """A table computed in forward with k·n (±1) rows was computed for the traced length
    (Funnel's relative sinusoids span -2n..2n): it grows with n and limits nothing. A
    constant table (MPT's ALiBi for ``max_seq_len``) has a size of its own."""
    return n > 1 and rows % n in (0, 1, n - 1)


def _fixed_table(source, access: Node, view: GraphView, rows: int, offset: int,
                 table: str) -> PositionTable | None:
    value = source.meta.get("val") if isinstance(source, Node) else None
    if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
        return None
    if view.depends_on_input(source):
        return None
    origin = next((p for p in view.producers(source) if p.op == "get_attr"), None)
    if origin is None and _follows_length(rows, view.n):
        return None
    if origin is not None:
        name = origin.meta.get("archlint.param") or origin.target
        name = name[6:] if name.startswith("model.") else name
        module = name.rpartition(".")[0]
    else:
        module = view.module_path(access)
        name = f"{module}:table"
    return PositionTable(name, module, rows, offset, access, table)
