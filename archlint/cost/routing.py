"""Sizes that depend on the data: tokens routed to each expert of a mixture of experts.

A Mixtral-style block picks the tokens of each expert with ``torch.where(mask)`` (ATen's
``nonzero``) or a boolean index: how many rows come out depends on the router's values,
which fake tensors do not have (``DynamicOutputShapeException: aten.nonzero``). The cost
model needs a number, so it states an assumption and keeps to it:

**Balanced load, measured.** The model is run once for real at the trace length, where
every ``nonzero`` records the share of its input's entries that were non-zero. Calls on
inputs of the same shape (one per expert, in the routing loop) form one group; each
call of a group is given the group's mean share. Top-k routing over E experts then gives
every expert k·T/E tokens: the total over experts is what the router really produced
(each token goes to k experts whatever the weights), and the largest expert is no
larger than the mean. At any length a call's output has ``round(share × numel)`` rows.
A ``capacity factor`` (Switch Transformer's headroom per expert) multiplies the share,
up to all entries.

:class:`DataDependentSizes` is the dispatch mode that answers ``nonzero`` (and boolean
indexing, which runs ``nonzero`` on its mask) with those sizes inside a fake run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten


@dataclass(frozen=True)
class Routing:
    """The share of non-zero entries per ``nonzero`` call, in call order."""

    shares: tuple[float, ...]
    measured_at: int                    # the length the shares were measured at
    capacity_factor: float = 1.0

    def share(self, index: int) -> float:
        """The share of the ``index``-th call; past the calls measured, the mean share
        (a branch taken only at other lengths)."""
        base = self.shares[index] if index < len(self.shares) else self.mean
        return min(1.0, base * self.capacity_factor)

    @property
    def mean(self) -> float:
        return sum(self.shares) / len(self.shares) if self.shares else 1.0

    def note(self) -> str:
        """The assumption, as the report states it."""
        groups = sorted({round(s, 4) for s in self.shares})
        shares = ", ".join(f"{s:.3g}" for s in groups)
        factor = (f", times a capacity factor of {self.capacity_factor:g}"
                  if self.capacity_factor != 1.0 else "")
        return (f"data-dependent sizes ({len(self.shares)} nonzero/where calls, as a "
                "mixture of experts routes tokens) assume balanced load: each call keeps "
                f"the mean share of its group measured at n={self.measured_at} "
                f"({shares} of its entries){factor}")


class _Counter(TorchDispatchMode):
    """Records, per real ``nonzero`` call, its input shape and share of non-zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[int, ...], float]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func is _aten.nonzero.default:
            self._record(args[0])
        elif func is _aten.index.Tensor:
            for index in args[1]:
                if isinstance(index, torch.Tensor) and index.dtype is torch.bool:
                    self._record(index)
        elif func is _aten.masked_select.default:
            self._record(torch.broadcast_tensors(args[0], args[1])[1])
        return func(*args, **(kwargs or {}))

    def _record(self, source: torch.Tensor) -> None:
        share = int(source.count_nonzero()) / source.numel() if source.numel() else 0.0
        self.calls.append((tuple(source.shape), share))


def measure(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], length: int,
            capacity_factor: float = 1.0) -> Routing | None:
    """Run ``module`` once for real and return the balanced shares of its ``nonzero``
    calls, or None when it makes none (its shapes do not depend on data)."""
    counter = _Counter()
    with torch.no_grad(), counter:
        module(*args, **kwargs)
    if not counter.calls:
        return None
    groups: dict[tuple[int, ...], list[float]] = defaultdict(list)
    for shape, share in counter.calls:
        groups[shape].append(share)
    means = {shape: sum(values) / len(values) for shape, values in groups.items()}
    return Routing(tuple(means[shape] for shape, _ in counter.calls), length,
                   capacity_factor)


def uses_data_dependent_sizes(graph_module: torch.fx.GraphModule | None) -> bool:
    """True when the traced graph has an op whose output size depends on the data."""
    if graph_module is None:
        return False
    for node in graph_module.graph.nodes:
        if node.op == "call_function":
            name = str(getattr(node.target, "_overloadpacket", node.target))
            if name in ("aten.nonzero", "aten.masked_select", "aten.nonzero_numpy") \
                    or (name == "aten.where" and len(node.args) == 1):
                return True
            if name == "aten.index" and any(
                    isinstance(i, torch.fx.Node) and _is_bool(i) for i in
                    (node.args[1] if len(node.args) > 1 else ())):
                return True
    return False


def _is_bool(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, torch.Tensor) and value.dtype is torch.bool


class DataDependentSizes(TorchDispatchMode):
    """Answers data-dependent ops in a fake run with the routing's sizes."""

    def __init__(self, routing: Routing) -> None:
        super().__init__()
        self.routing = routing
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is _aten.nonzero.default:
            return self._nonzero(args[0])
        if func is _aten.index.Tensor and any(
                isinstance(i, torch.Tensor) and i.dtype is torch.bool for i in args[1]):
            indices: list[Any] = []
            for index in args[1]:
                if isinstance(index, torch.Tensor) and index.dtype is torch.bool:
                    indices.extend(self._nonzero(index).unbind(1))
                else:
                    indices.append(index)
            return func(args[0], indices)
        if func is _aten.masked_select.default:
            source, mask = torch.broadcast_tensors(args[0], args[1])
            rows = self._nonzero(mask).shape[0]
            return torch.empty((rows,), dtype=source.dtype, device=source.device)
        return func(*args, **kwargs)

    def _nonzero(self, source: torch.Tensor) -> torch.Tensor:
        share = self.routing.share(self.calls)
        self.calls += 1
        rows = min(source.numel(), math.floor(share * source.numel() + 0.5))
        return torch.empty((rows, source.dim()), dtype=torch.long, device=source.device)
