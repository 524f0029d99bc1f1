"""Transfer functions: how each ATen op moves reach from its inputs to its output.

A registry of small pure functions keyed by ATen op objects (as
``torch.utils.flop_counter.register_flop_formula``): ``@register_transfer(aten.conv1d)``
on ``fn(node, ctx) -> TensorReach | tuple | None``. ``ctx`` (:class:`TransferContext`)
gives the inputs' reach, shapes at the trace length, concrete values of constant
(input-independent) tensors such as masks, and records where positions mix.

This module holds the registry, the context, and the ops that only move data
(views, transposes, slicing, concatenation) or act per position (elementwise ops). The
mixing ops live in :mod:`.windows`, :mod:`.contract` and :mod:`.sequential`. An op with
no transfer function is handled conservatively (:func:`conservative`) and reported as
unattributed, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.fx import Node

from archlint.optable import OpTable
from archlint.reach.descriptor import FrameReach, KeyAxis, Serial, TensorReach, longest
from archlint.reach.hops import INF

aten = torch.ops.aten

Transfer = Callable[[Node, "TransferContext"], Any]
TRANSFERS = OpTable("transfer function")
register_transfer = TRANSFERS.register
transfer_for = TRANSFERS.lookup


@dataclass
class Mix:
    """Where a node moves information between positions of one frame."""

    kind: str                 # "window" | "attention" | "global" | "scan" | "recurrence"
    frame: str
    left: float               # farthest input position reached to the left (positions)
    right: float
    per_n: int = 0            # serial steps proportional to n (recurrences)
    detail: dict[str, Any] = field(default_factory=dict)


class TransferContext:
    """What a transfer function may ask about the node it handles."""

    def __init__(self, reach: dict[Node, Any], trace_len: int,
                 value: Callable[[Node], Any]) -> None:
        self._reach = reach
        self.trace_len = trace_len
        self._value = value
        self.node: Node | None = None
        self.mixes: list[Mix] = []
        self.notes: list[str] = []
        self.loop_step = False

    def start(self, node: Node) -> None:
        self.node, self.mixes, self.notes, self.loop_step = node, [], [], False

    def reach(self, arg: Any) -> TensorReach | None:
        found = self._reach.get(arg) if isinstance(arg, Node) else None
        return found if isinstance(found, TensorReach) else None

    def shape(self, arg: Any) -> tuple[int, ...] | None:
        value = arg.meta.get("val") if isinstance(arg, Node) else None
        if isinstance(value, torch.Tensor):
            return tuple(int(s) for s in value.shape)
        return None

    def out_shape(self) -> tuple[int, ...] | None:
        return self.shape(self.node)

    def value(self, arg: Any) -> Any:
        """Concrete value of an input-independent node (mask, table), else None."""
        if not isinstance(arg, Node):
            return arg
        if self.reach(arg) is not None or arg in self._reach and self._reach[arg] is not None:
            return None
        return self._value(arg)

    def tensor_args(self) -> list[Node]:
        return [a for a in self.node.all_input_nodes if self.shape(a) is not None]

    def serial_in(self) -> Serial:
        found = [r.serial for r in (self.reach(a) for a in self.node.all_input_nodes) if r]
        return longest(found, self.trace_len)

    def positional_in(self) -> bool:
        return any(r.positional for r in (self.reach(a) for a in self.node.all_input_nodes) if r)

    def mix(self, kind: str, frame: str, left: float, right: float, per_n: int = 0,
            **detail: Any) -> None:
        self.mixes.append(Mix(kind, frame, left, right, per_n, detail))

    def note(self, text: str) -> None:
        self.notes.append(text)


def arg(node: Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def norm_dim(dim: int, rank: int) -> int:
    return dim % rank if rank else 0


# ---------------------------------------------------------------------------- union


def union(ctx: TransferContext, inputs: list[Any], out_shape: tuple[int, ...] | None
          ) -> TensorReach | None:
    """Elementwise combination with broadcasting: each output element reads the union of
    what the matching input elements read."""
    rank = len(out_shape) if out_shape is not None else None
    frames: dict[str, FrameReach] = {}
    positional = False
    serials, picks, states, steps = [], [], [], []
    for item in inputs:
        reach = ctx.reach(item)
        shape = ctx.shape(item)
        if reach is None:
            if shape is not None and rank is not None and _aligned_constant(shape, rank,
                                                                            inputs, ctx):
                positional = True
            continue
        positional |= reach.positional
        serials.append(reach.serial)
        picks.append(reach.picked)
        states.append(bool(reach.frames) and not reach.has_axis and reach.picked is None)
        steps.append(reach.step)
        offset = 0 if rank is None or shape is None else rank - len(shape)
        for name, frame in reach.frames.items():
            moved = _shift(frame, offset)
            frames[name] = merge(frames[name], moved) if name in frames else moved
    if not serials:
        return None
    fresh = {p for p in picks if p is not None}
    merged = max((s for s in steps if s is not None), default=None)
    # a new position meets a state carried from earlier positions: one step of a loop
    # (counted once per position, however many ops fold it into the state)
    meets = bool(fresh) and (any(states) or len(fresh) > 1)
    newest = max(fresh | ({merged} if merged is not None else set()), default=None)
    older = max([s for s in steps if s is not None] + sorted(fresh)[:-1], default=-1)
    ctx.loop_step |= meets and newest is not None and newest > older
    picked = fresh.pop() if len(fresh) == 1 and None not in picks else None
    return TensorReach(frames, positional, longest(serials, ctx.trace_len), picked=picked,
                       step=newest if meets or merged is not None else None)


def _shift(frame: FrameReach, offset: int) -> FrameReach:
    if offset == 0 or frame.dim is None:
        return frame
    key = None if frame.key is None else replace(frame.key, dim=frame.key.dim + offset)
    return replace(frame, dim=frame.dim + offset, key=key)


def _aligned_constant(shape, rank, inputs, ctx) -> bool:
    """A constant whose values vary along a frame axis injects position information
    (a positional table, a relative bias, a rotary table)."""
    offset = rank - len(shape)
    for item in inputs:
        reach = ctx.reach(item)
        if reach is None:
            continue
        other = ctx.shape(item) or ()
        shift = rank - len(other)
        for frame in reach.frames.values():
            dims = [d for d in (frame.dim, frame.key.dim if frame.key else None) if d is not None]
            for dim in dims:
                local = dim + shift - offset
                if 0 <= local < len(shape) and shape[local] > 1 and frame.length > 1:
                    return True
    return False


def merge(a: FrameReach, b: FrameReach) -> FrameReach:
    """Union of two reaches of the same frame that land on the same element."""
    dim = a.dim if a.dim is not None else b.dim
    if a.window is None or b.window is None:
        window = a.window or b.window
    else:
        shift_a, shift_b = a.jump, b.jump
        window = (min(a.window[0], b.window[0]), max(a.window[1], b.window[1]))
        if shift_a != shift_b or (a.routed != b.routed and a.dim is not None
                                  and b.dim is not None):
            window = (-INF, INF)             # elements of different positions meet
    span = a.span.union(b.span) if a.span and b.span else (a.span or b.span)
    key = a.key or b.key
    if a.key and b.key:
        key = KeyAxis(a.key.dim, min(a.key.lo, b.key.lo), max(a.key.hi, b.key.hi),
                      max(a.key.length, b.key.length), min(a.key.band_lo, b.key.band_lo),
                      max(a.key.band_hi, b.key.band_hi))
    base = a if a.dim is not None else b
    routed = a.routed if a.routed == b.routed or b.dim is None else \
        b.routed if a.dim is None else None
    return replace(base, dim=dim, window=window, span=span, key=key, routed=routed,
                   left=a.left.union(b.left), right=a.right.union(b.right))


# ----------------------------------------------------------------- conservative


def conservative(node: Node, ctx: TransferContext) -> Any:
    """An op nobody described: assume every element reads every position of the inputs."""
    inputs = ctx.tensor_args()
    shape = ctx.out_shape()
    if shape is None:
        value = node.meta.get("val")
        if isinstance(value, (tuple, list)):
            single = _conservative_one(ctx, inputs, None)
            return tuple(single for _ in value)
        return None
    return _conservative_one(ctx, inputs, shape)


def _conservative_one(ctx, inputs, shape) -> TensorReach | None:
    reach = [ctx.reach(i) for i in inputs]
    reach = [r for r in reach if r is not None]
    if not reach:
        return None
    frames: dict[str, FrameReach] = {}
    for r, source in zip(reach, [i for i in inputs if ctx.reach(i) is not None]):
        same_rank = shape is not None and len(ctx.shape(source) or ()) == len(shape)
        for name, frame in r.frames.items():
            if same_rank and frame.dim is not None:
                wide = replace(frame, window=(-INF, INF), key=None,
                               left=frame.left.step(INF), right=frame.right.step(INF))
            else:
                collapsed = frame.collapse(None, ctx.trace_len) if frame.dim is not None \
                    else frame.span
                wide = replace(frame, dim=None, window=None, key=None, span=collapsed,
                               left=frame.left.step(INF), right=frame.right.step(INF))
            frames[name] = merge(frames[name], wide) if name in frames else wide
    for name in frames:
        ctx.mix("global", name, INF, INF, conservative=True)
    return TensorReach(frames, any(r.positional for r in reach),
                       longest([r.serial for r in reach], ctx.trace_len))


def pointwise(node: Node, ctx: TransferContext) -> TensorReach | None:
    return union(ctx, list(node.args) + list(node.kwargs.values()), ctx.out_shape())


def is_pointwise(target: Any) -> bool:
    return torch.Tag.pointwise in getattr(target, "tags", ())


def clip_int(value: float) -> float:
    return value if math.isinf(value) else float(value)
