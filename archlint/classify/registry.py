"""Registries of layer handlers, keyed by module type and by ATen op.

A module handler maps an ``nn.Module`` to a :class:`Classification`; an op handler maps
an fx node (with the :class:`GraphView` for context) to one. Registering a key twice is
an error, as in ``torch.utils.flop_counter``. Lookups walk the module's MRO, so a
subclass of ``nn.Conv1d`` is a conv.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlint.kinds import LayerKind
from archlint.optable import OpTable


@dataclass
class Classification:
    """What a handler concluded about one module or op."""

    kind: LayerKind
    params: dict[str, Any] = field(default_factory=dict)
    #: the module's children are internals of this layer, not layers of their own
    claims_children: bool = False
    #: the node whose source line best names the layer (e.g. the ``q @ k^T`` line)
    anchor: Any = None


ModuleHandler = Callable[[nn.Module], "Classification | None"]
OpHandler = Callable[..., "Classification | None"]

MODULE_HANDLERS: dict[type, ModuleHandler] = {}
OP_HANDLERS = OpTable("op handler")
register_op = OP_HANDLERS.register
op_handler = OP_HANDLERS.lookup


def register_module(*types: type) -> Callable[[ModuleHandler], ModuleHandler]:
    def decorator(handler: ModuleHandler) -> ModuleHandler:
        for module_type in types:
            if module_type in MODULE_HANDLERS:
                raise RuntimeError(f"module handler for {module_type.__name__} registered twice")
            MODULE_HANDLERS[module_type] = handler
        return handler
    return decorator


def module_handler(module: nn.Module) -> ModuleHandler | None:
    for cls in type(module).__mro__:
        if cls in MODULE_HANDLERS:
            return MODULE_HANDLERS[cls]
    return None


def op_name(target: Any) -> str:
    """A stable, readable name for an fx call target (``aten.cumsum``).

    Graphs from ``symbolic_trace`` call torch-level functions (``torch.arange``,
    ``operator.add``); they are named like the ATen op they dispatch to, so the
    name-based pattern checks read both kinds of graph.
    """
    if isinstance(target, torch._ops.OpOverload):
        return str(target.overloadpacket)
    if isinstance(target, str):
        return f"aten.{target}"
    name = getattr(target, "__name__", str(target)).strip("_")
    return name if name in ("getitem",) else f"aten.{name}"
