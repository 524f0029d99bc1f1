"""What a layout does to this model: its blocks, its tensor-parallel plan, its violations.

- **Blocks** are the units FSDP wraps (one all-gather per block) and checkpointing
  recomputes: the entries of the largest repeated stack (a ``ModuleList``/``Sequential``
  of two or more modules of one class with parameters), else the root's children that
  hold parameters.
- **The TP plan** (Megatron-style, Shoeybi et al. 2019) is derived per block from its
  ``nn.Linear`` layers in call order: a Linear that widens the block's width ``d``
  (``d -> k·d``: q/k/v, a fused qkv, the MLP's first layer) is split colwise, one that
  narrows back (``k·d -> d``: the attention output, the MLP's second layer) rowwise.
  Blocks without such Linears (an LSTM, a conv stack) get no plan: their weights stay
  replicated over the tp ranks, and the report says so.
- **Violations**: a degree the model cannot be split by — heads % tp, a split Linear's
  features % tp, the sequence % cp (2·cp for causal attention, whose load-balanced
  split gives each rank two chunks), a recurrence under cp — each at the layer's line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from archlint.graph import Layer, ModelGraph, SourceLocation
from archlint.kinds import LayerKind
from archlint.parallel.layout import Layout


@dataclass(frozen=True)
class Violation:
    """One way the layout does not divide the model."""

    dimension: str                      # tp | cp
    message: str                        # names the constraint and the numbers
    fix: str
    layer: str | None
    location: SourceLocation | None


@dataclass(frozen=True)
class Plan:
    """The model-specific part of a layout."""

    blocks: tuple[str, ...]                                  # module paths FSDP wraps
    colwise: tuple[str, ...] = ()                            # Linear paths split by output
    rowwise: tuple[str, ...] = ()                            # Linear paths split by input
    unplanned: tuple[str, ...] = ()                          # blocks with no TP plan
    violations: tuple[Violation, ...] = field(default_factory=tuple)


def blocks_of(module: nn.Module) -> tuple[str, ...]:
    """Module paths of the repeated blocks, else of the root's children with parameters."""
    best: tuple[int, tuple[str, ...]] = (0, ())
    for path, container in module.named_modules():
        if not isinstance(container, (nn.ModuleList, nn.Sequential)):
            continue
        children = [(name, child) for name, child in container.named_children()
                    if any(True for _ in child.parameters())]
        if len(children) < 2 or len({type(child) for _, child in children}) != 1:
            continue
        size = sum(p.numel() for _, child in children for p in child.parameters())
        if size > best[0]:
            prefix = f"{path}." if path else ""
            best = (size, tuple(prefix + name for name, _ in children))
    if best[1]:
        return best[1]
    return tuple(name for name, child in module.named_children()
                 if any(True for _ in child.parameters()))


def make_plan(graph: ModelGraph, layout: Layout, seq_lens: tuple[int, ...]) -> Plan:
    """Blocks, TP plan and violations of ``layout`` on the traced model."""
    module = graph.module
    blocks = blocks_of(module)
    colwise: list[str] = []
    rowwise: list[str] = []
    unplanned: list[str] = []
    violations: list[Violation] = []
    if layout.tp > 1:
        for block in blocks:
            wide, narrow = _split_linears(graph, block)
            if not wide or not narrow:
                unplanned.append(block)
            colwise += wide
            rowwise += narrow
        violations += _tp_violations(graph, layout.tp, colwise, rowwise)
    if layout.cp > 1:
        violations += _cp_violations(graph, layout.cp, seq_lens)
    return Plan(blocks=blocks, colwise=tuple(colwise), rowwise=tuple(rowwise),
                unplanned=tuple(unplanned), violations=tuple(violations))


def _split_linears(graph: ModelGraph, block: str) -> tuple[list[str], list[str]]:
    """The block's colwise and rowwise Linears.

    Inside an attention module, the last Linear called that returns to the width is the
    output projection (rowwise) and every Linear from the width before it an input
    projection (colwise). Elsewhere, in call order, a Linear from the width opens a
    widened stream (colwise) and the next one back to the width closes it (rowwise).
    Half a pair (a colwise Linear nothing closes) is not split.
    """
    linears = [path for path in dict.fromkeys(graph.module_calls)
               if path.startswith(block + ".")
               and isinstance(graph.module.get_submodule(path), nn.Linear)]
    if not linears:
        return [], []
    width = graph.module.get_submodule(linears[0]).in_features
    attention = sorted({layer.name.partition(":")[0]
                        for layer in graph.layers_of(LayerKind.ATTENTION)
                        if layer.name.startswith(block + ".")}, key=len, reverse=True)
    wide: list[str] = []
    narrow: list[str] = []
    for scope in attention:
        inside = [p for p in linears if p.startswith(scope + ".")]
        outs = [p for p in inside if graph.module.get_submodule(p).out_features == width]
        if not outs:
            continue
        ins = [p for p in inside[:inside.index(outs[-1])]
               if graph.module.get_submodule(p).in_features == width]
        if ins:
            wide += ins
            narrow.append(outs[-1])
        linears = [p for p in linears if not p.startswith(scope + ".")]
    opened: list[str] = []
    for path in linears:
        linear = graph.module.get_submodule(path)
        if opened and linear.out_features == width and linear.in_features != width:
            wide += opened
            narrow.append(path)
            opened = []
        elif linear.in_features == width and linear.out_features != width:
            opened.append(path)
    return wide, narrow


def _tp_violations(graph: ModelGraph, tp: int, colwise: list[str],
                   rowwise: list[str]) -> list[Violation]:
    found = []
    split_heads = []                  # attention modules whose heads tp already does not divide
    for layer in graph.layers_of(LayerKind.ATTENTION):
        heads = layer.params.get("heads")
        if isinstance(heads, int) and heads % tp:
            split_heads.append(layer.name.partition(":")[0])
            found.append(Violation(
                "tp", f"tp={tp} does not divide the {heads} heads of {_name(layer)}",
                f"use tp in {_divisors(heads)} (a divisor of the head count)",
                layer.name, layer.location))
    for path, features, side in ([(p, graph.module.get_submodule(p).out_features, "output")
                                  for p in colwise]
                                 + [(p, graph.module.get_submodule(p).in_features, "input")
                                    for p in rowwise]):
        if features % tp and not any(path.startswith(scope + ".") for scope in split_heads):
            found.append(Violation(
                "tp", f"tp={tp} does not divide the {features} {side} features of {path}",
                f"use tp in {_divisors(features)}", path, graph.locations.get(path)))
    return _first_per_line(found)


def _cp_violations(graph: ModelGraph, cp: int, seq_lens: tuple[int, ...]) -> list[Violation]:
    found = []
    for layer in graph.layers_of(LayerKind.RECURRENCE):
        found.append(Violation(
            "cp", f"cp={cp} splits the sequence, but {_name(layer)} is a recurrence: each "
            "position needs the state of the one before",
            "use cp=1 for this model (shard with fsdp/tp instead)", layer.name, layer.location))
    attention = graph.layers_of(LayerKind.ATTENTION)
    if not attention:
        return found
    causal = any(layer.params.get("causal") for layer in attention)
    chunks = 2 * cp if causal else cp
    for seq_len in seq_lens:
        if seq_len % chunks:
            layer = attention[0]
            why = (f"2·cp = {chunks} chunks (load-balanced causal split)" if causal
                   else f"{chunks} chunks")
            found.append(Violation(
                "cp", f"cp={cp} does not divide n={seq_len} into {why} at {_name(layer)}",
                f"use a --seq-len divisible by {chunks}, or a cp whose "
                f"{'2·cp' if causal else 'cp'} divides {seq_len}",
                layer.name, layer.location))
    return found


def _name(layer: Layer) -> str:
    return layer.name.partition(":")[0] or layer.name


def _divisors(number: int, most: int = 64) -> str:
    """The divisors of ``number`` up to ``most`` (a degree beyond it is not a layout)."""
    return ", ".join(str(d) for d in range(1, min(number, most) + 1) if number % d == 0)


def _first_per_line(violations: list[Violation]) -> list[Violation]:
    """One violation per (source line, message shape): 12 identical blocks give one."""
    seen, kept = set(), []
    for violation in violations:
        key = (violation.location, violation.message.split(" of ")[0])
        if key not in seen:
            seen.add(key)
            kept.append(violation)
    return kept
