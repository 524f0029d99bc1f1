"""A table of small functions keyed by ATen op, as ``torch.utils.flop_counter`` keeps its
formulas: registering an op twice is an error, and an op packet (``aten.cumsum``) covers
all of its overloads. Classification (op handlers) and reach (transfer functions) each
keep one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class OpTable(dict):
    """ATen op (packet or overload) -> function."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def register(self, *ops: Any) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            for op in ops:
                if op in self:
                    raise RuntimeError(f"{self.what} for {op} registered twice")
                self[op] = fn
            return fn
        return decorator

    def lookup(self, target: Any) -> Callable[..., Any] | None:
        if target in self:
            return self[target]
        packet = getattr(target, "overloadpacket", None)
        return self.get(packet) if packet is not None else None
