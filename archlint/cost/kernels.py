"""What fused CPU kernels allocate inside themselves, which fake tensors cannot see.

A fake kernel returns outputs of the right shape and nothing else. Real CPU kernels
allocate more, measured with ``torch.profiler(profile_memory=True)`` on torch 2.13 and
read in their sources; one handler per ATen op, in three modules:

- :mod:`.attention_kernels`: the ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``
  eval fast paths materialize B·h·n·n scores (even with ``need_weights=False``); CPU
  flash SDPA keeps per-thread score blocks; ``native_layer_norm_backward`` per-thread
  partial sums;
- :mod:`.conv_kernels`: im2col columns (slow paths) or oneDNN reorders, by the backend
  ``torch._C._select_conv_backend`` picks for the shapes;
- :mod:`.rnn_kernels`: ``nn.LSTM``'s oneDNN workspace (which the fake kernel reports as
  empty) and scratchpad, calibrated at other lengths.

:class:`KernelMemoryMode` sits above the memory tracker and makes those allocations
visible: transients are allocated as fake tensors around the op, missing outputs are
replaced by fake tensors of the real size.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: (shape, dtype) of each tensor a kernel allocates
Shapes = list[tuple[tuple[int, ...], torch.dtype]]
#: op -> function(*args, **kwargs) -> (phases allocated and freed in turn, held during the op)
TRANSIENTS: dict[Any, Callable[..., tuple[list[Shapes], Shapes]]] = {}
#: op -> function(args, kwargs, out) -> out with the missing outputs filled in
OUTPUT_FIXES: dict[Any, Callable[..., Any]] = {}

#: ops FakeTensorMode must not answer from its dispatch cache: a cache hit rebuilds
#: outputs that the kernel returns as one shared storage as separate storages (the two
#: bias gradients of ``mkldnn_rnn_layer_backward``: 512 B more for a 32-wide LSTM from
#: the second run of a process on), so a prediction would depend on what ran before it
UNCACHED: set[Any] = set()

_HANDLERS = ("attention_kernels", "conv_kernels", "rnn_kernels")


def register(table: dict[Any, Callable[..., Any]],
             op: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler for ``op`` in ``table``; a second one for the same op is a bug."""
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        if op in table:
            raise RuntimeError(f"duplicate kernel memory handler for {op}")
        table[op] = function
        return function
    return decorate


def as_bytes(count: float) -> Shapes:
    """One uint8 tensor of ``count`` bytes (nothing below one byte)."""
    return [((max(0, round(count)),), torch.uint8)] if count >= 1 else []


class KernelMemoryMode(TorchDispatchMode):
    """Make kernel-internal allocations visible to the trackers below this mode.

    ``cpu_kernels=False`` (a GPU device): the CPU kernels' hidden allocations are not the
    GPU's, so only the :data:`UNCACHED` rule applies (it keeps answers independent of
    what ran before, on any device).
    """

    def __init__(self, cpu_kernels: bool = True) -> None:
        super().__init__()
        self.cpu_kernels = cpu_kernels
        for name in _HANDLERS:                    # they register on import
            importlib.import_module(f"archlint.cost.{name}")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001,ANN204
        kwargs = kwargs or {}
        packet = func._overloadpacket
        held: list[torch.Tensor] = []
        if not self.cpu_kernels:
            return _uncached(func, args, kwargs) if packet in UNCACHED else func(*args, **kwargs)
        if packet in TRANSIENTS:
            phases, keep = TRANSIENTS[packet](*args, **kwargs)
            for phase in phases:
                temporary = [torch.empty(shape, dtype=dtype) for shape, dtype in phase]
                del temporary
            held = [torch.empty(shape, dtype=dtype) for shape, dtype in keep]
        if packet in UNCACHED:
            out = _uncached(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        del held
        if packet in OUTPUT_FIXES:
            out = OUTPUT_FIXES[packet](args, kwargs, out)
        return out


def _uncached(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``func`` run with the fake mode's dispatch cache off (see :data:`UNCACHED`)."""
    mode = next((arg.fake_mode for arg in args
                 if isinstance(arg, torch._subclasses.FakeTensor)), None)
    if mode is None or not mode.cache_enabled:
        return func(*args, **kwargs)
    mode.cache_enabled = False
    try:
        return func(*args, **kwargs)
    finally:
        mode.cache_enabled = True
