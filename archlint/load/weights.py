"""Building the model without paying for weight values no stage reads.

Most of archlint never reads a weight's value: tracing, classification and the cost
model see shapes (the cost model runs on fake tensors), so ``nn.Embedding(10**8, 8)``
needs its 3.2 GB only where a forward runs on real values for a number that depends on
them: the gradient probes and ``archlint profile``. While the model file is imported
and its model built, :class:`WeightBuilder` (a ``TorchFunctionMode``) watches every
initialization of a *large* tensor (:data:`LARGE_TENSOR` bytes or more):

- ``torch.empty`` of it is left alone: pages the kernel never wrote cost nothing
  resident (a read maps the shared zero page);
- the initialization that would write every element — ``normal_``, ``uniform_`` and the
  rest of ``nn.init`` (every in-place op on the tensor while the model is built), or a
  ``torch.randn``/``torch.rand`` of that size — is skipped, leaving zeros, when no
  stage needs values (``--no-dynamic``), or when the values would not fit: more than
  half of the headroom :func:`archlint.memlimit.memory_limit` reports.

Smaller tensors (biases, norms, masks, sin/cos tables) are built exactly as the model's
code says, so their values (a causal mask, a positional table) are what the analysis
reads. A model whose large weights were built for real is analyzed as before; one
whose weights were skipped because they do not fit is analyzed statically, and the
probes are skipped with a note naming the weights (:attr:`WeightBuilder.skipped`).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from archlint.memlimit import memory_limit
from archlint.units import format_bytes

#: a tensor at least this large is "large": its initialization may be skipped
LARGE_TENSOR = 64 * 2**20
#: the share of the machine's headroom real weights may take (the rest: activations)
FIT_FRACTION = 0.5
#: in-place ops that change a tensor's metadata, not its values: never skipped
_METADATA_OPS = frozenset({
    "requires_grad_", "share_memory_", "set_", "resize_", "resize_as_", "detach_",
    "as_strided_", "unsqueeze_", "squeeze_", "t_", "transpose_", "swapdims_", "swapaxes_",
    "retain_grad_", "rename_", "refine_names_", "align_to_"})
#: factories whose values are random: a skipped one returns ``torch.empty``
_RANDOM_FACTORIES = {"randn": torch.empty, "rand": torch.empty,
                     "randn_like": torch.empty_like, "rand_like": torch.empty_like}


class WeightBuilder(TorchFunctionMode):
    """Skips the value initialization of large tensors (see the module docstring).

    ``values_needed``: a stage will read weight values (probes); large tensors are then
    initialized for real while they fit the machine.
    """

    def __init__(self, values_needed: bool) -> None:
        super().__init__()
        self.values_needed = values_needed
        self.real_bytes = 0                    # large tensors initialized for real
        self.reason = ""                       # why the first one was skipped
        self._skipped: set[int] = set()        # data pointers of skipped storages
        self.skipped: dict[str, int] = {}      # after :meth:`collect`: name -> bytes

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _RANDOM_FACTORIES and "out" not in kwargs:
            nbytes = _factory_bytes(name, args, kwargs)
            if nbytes >= LARGE_TENSOR and self._skip(nbytes):
                options = {k: v for k, v in kwargs.items() if k != "generator"}
                result = _RANDOM_FACTORIES[name](*args, **options)
                self._mark(result)
                return result
        # a Tensor method has the tensor first; nn.init.normal_ & co. pass it as `tensor`
        target = args[0] if args else kwargs.get("tensor")
        if name.endswith("_") and not name.startswith("__") \
                and isinstance(target, torch.Tensor) and not _is_fake(target):
            if self._pointer(target) in self._skipped:
                return target                  # the rest of an init chain (trunc_normal_)
            nbytes = target.untyped_storage().nbytes()
            if nbytes >= LARGE_TENSOR and name not in _METADATA_OPS and self._skip(nbytes):
                self._mark(target)
                return target
        return func(*args, **kwargs)

    def _skip(self, nbytes: int) -> bool:
        """Skip the initialization of ``nbytes`` of values? Counts the ones it keeps."""
        if not self.values_needed:
            self.reason = self.reason or "no stage reads their values (the probes are off)"
            return True
        limit = memory_limit()
        # an RLIMIT counts the allocation already made; MemAvailable only written pages
        headroom = limit.free + (nbytes if limit.source.startswith("RLIMIT") else 0)
        if self.real_bytes + nbytes > FIT_FRACTION * headroom:
            self.reason = self.reason or (
                f"their values would not fit: {FIT_FRACTION:.0%} of the {limit} "
                "this machine allows")
            return True
        self.real_bytes += nbytes
        return False

    @staticmethod
    def _pointer(tensor: torch.Tensor) -> int:
        try:
            return tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):
            return -1

    def _mark(self, tensor: torch.Tensor) -> None:
        pointer = self._pointer(tensor)
        if pointer > 0:
            self._skipped.add(pointer)
            weakref.finalize(tensor, self._skipped.discard, pointer)

    def collect(self, model: nn.Module) -> dict[str, int]:
        """The parameters and buffers of ``model`` left unbuilt: name -> bytes."""
        seen: set[int] = set()
        for name, tensor in (*model.named_parameters(), *model.named_buffers()):
            pointer = self._pointer(tensor)
            if pointer in self._skipped and pointer not in seen:
                seen.add(pointer)
                self.skipped[name] = tensor.untyped_storage().nbytes()
        return self.skipped

    def note(self) -> str:
        """``embed.weight (3.2 GB) not built for real: ...`` ('' when all were built)."""
        if not self.skipped:
            return ""
        names = ", ".join(f"{name} ({format_bytes(size)})"
                          for name, size in sorted(self.skipped.items()))
        return f"weights not built for real, {self.reason}: {names}"


def _is_fake(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, torch._subclasses.FakeTensor) or tensor.is_meta


def _factory_bytes(name: str, args: tuple, kwargs: dict[str, Any]) -> int:
    """Bytes a ``randn``/``rand``(``_like``) call would allocate."""
    if name.endswith("_like"):
        source = args[0] if args else kwargs.get("input")
        if not isinstance(source, torch.Tensor):
            return 0
        dtype = kwargs.get("dtype") or source.dtype
        return source.numel() * _itemsize(dtype)
    size = kwargs.get("size", args[0] if len(args) == 1 else args)
    if isinstance(size, int):
        size = (size,)
    try:
        count = math.prod(int(s) for s in size)
    except (TypeError, ValueError):
        return 0
    return count * _itemsize(kwargs.get("dtype") or torch.get_default_dtype())


def _itemsize(dtype: torch.dtype) -> int:
    try:
        return torch.empty((), dtype=dtype).element_size()
    except (TypeError, RuntimeError):
        return 4
