"""Reach without an ATen graph: the classified layers composed as a chain in call order.

Used when the model was traced with ``symbolic_trace`` (torch-level ops and leaf
modules) or not at all. Each layer's reach comes from its classified parameters; the
layers are assumed to run one after the other, so residual and parallel branches are not
modeled (the report says so) and the result can only over-state the serial steps and
under-state nothing else a chain of these layers would reach.
"""

from __future__ import annotations

from dataclasses import replace

from archlint.graph import Layer, ModelGraph
from archlint.kinds import LayerKind
from archlint.reach.descriptor import FrameReach, Serial, TensorReach
from archlint.reach.hops import INF
from archlint.reach.layers import LayerRow
from archlint.reach.measures import causality, dependency_path, longest_path, receptive_field

NOTE = ("no ATen graph ({frontend} front-end): layers composed as a chain in call order; "
        "residual and parallel branches are not modeled")


def _ordered(graph: ModelGraph) -> list[Layer]:
    calls = {path: i for i, path in enumerate(graph.module_calls)}

    def position(layer: Layer) -> int:
        module = layer.name.split(":")[0]
        while module and module not in calls:
            module = module.rpartition(".")[0]
        return calls.get(module, len(calls))
    return sorted(graph.layers, key=position)


def _first(value, index: int = 0, default: int = 0) -> int:
    if value is None or isinstance(value, str):
        return default
    if isinstance(value, (tuple, list)):
        return int(value[min(index, len(value) - 1)]) if value else default
    return int(value)


def _window(frame: FrameReach, layer: Layer, axis: int) -> tuple[FrameReach, bool]:
    p = layer.params
    k = _first(p.get("kernel_size"), axis, 1)
    d = _first(p.get("dilation"), axis, 1)
    s = _first(p.get("stride"), axis, 1)
    extent = d * (k - 1)
    if p.get("padding") == "same":
        left = extent // 2
    else:
        left = p.get("pad_left", _first(p.get("padding"), axis, 0))
    jump = frame.jump
    lo, hi = frame.window
    return replace(frame, window=(lo - float(jump * left), hi + float(jump * (extent - left))),
                   jump=jump * s, left=frame.left.step(float(jump * left)),
                   right=frame.right.step(float(jump * max(0, extent - left)))), extent > 0


def _attend(frame: FrameReach, layer: Layer) -> FrameReach:
    causal, window = layer.params.get("causal"), layer.params.get("window")
    lo, hi = frame.window
    if window:
        reach = float(frame.jump * (int(window) - 1))
        ahead = 0.0 if causal else reach
        return replace(frame, window=(lo - reach, hi + ahead), left=frame.left.step(reach),
                       right=frame.right.step(ahead))
    return replace(frame, window=(-INF, hi if causal else INF), left=frame.left.step(INF),
                   right=frame.right if causal else frame.right.step(INF))


def chain_reach(graph: ModelGraph, names: tuple[str, ...], target_len: int,
                span: int | None) -> tuple[TensorReach, list[LayerRow], str]:
    trace_len = graph.trace_len
    frames = {name: FrameReach.identity(i, trace_len) for i, name in enumerate(names)}
    serial = Serial()
    rows: list[LayerRow] = []
    for layer in _ordered(graph):
        kind, p = layer.kind, layer.params
        mixed, per_n = False, 0
        for axis, name in enumerate(names):
            frame = frames[name]
            if frame.dim is None:
                continue
            if kind in (LayerKind.CONV, LayerKind.POOL):
                frame, moved = _window(frame, layer, axis)
                mixed |= moved
            elif kind is LayerKind.ATTENTION:
                frame, mixed = _attend(frame, layer), True
            elif kind is LayerKind.RECURRENCE or (kind is LayerKind.SSM and p.get("loop")):
                lo, hi = frame.window
                both = bool(p.get("bidirectional"))
                frame = replace(frame, window=(-INF, INF if both else hi),
                                left=frame.left.recur(float(frame.jump)),
                                right=frame.right.recur(float(frame.jump)) if both else frame.right)
                mixed, per_n = True, int(p.get("num_layers", 1) or 1)
            elif kind is LayerKind.SSM:
                frame, mixed = replace(frame, window=(-INF, frame.window[1]),
                                       left=frame.left.step(INF)), True
            elif kind is LayerKind.GLOBAL_MIX:
                frame, mixed = replace(frame, dim=None, window=None,
                                       span=frame.collapse(None, trace_len),
                                       left=frame.left.step(INF),
                                       right=frame.right.step(INF)), True
            frames[name] = frame
        if not mixed:
            continue
        serial = serial.plus(per_n=per_n) if per_n else serial.plus(steps=1)
        first = frames[names[0]]
        verdict = causality(first, trace_len) if first.dim is not None else None
        rows.append(LayerRow(
            name=layer.name, kind=kind.value, location=layer.location, layer=layer,
            fields={n: receptive_field(f, trace_len) for n, f in frames.items()},
            jump=first.jump if first.dim is not None else None,
            dependency_path=dependency_path(first, (span or target_len) - 1),
            longest_path=longest_path(first, target_len), serial_steps=serial.expr(trace_len),
            reach_left=0.0, reach_right=0.0,
            causal=None if verdict is None else verdict.causal))
    note = NOTE.format(frontend=graph.frontend)
    return TensorReach(frames, False, serial), rows, note
