"""The trackers behind :mod:`archlint.cost.memory`'s split of the peak.

:class:`SplitMemTracker` is PyTorch's ``MemTracker`` with the finer split; ``MemTracker``
is a private API, so :class:`_Ledger` is a self-contained fallback on public APIs only
(tested to agree with it to the byte).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.module_tracker import ModuleTracker
from torch.utils.weak import WeakIdKeyDictionary

from archlint.cost.memory import PairwiseRule, _Split


def _innermost(parents: Iterable[str]) -> str:
    """Module path (root name stripped) of the innermost active module; "" for the root."""
    names = [name for name in parents if name != "Global"]
    if not names:
        return ""
    deepest = max(sorted(names), key=lambda name: name.count("."))
    return deepest.partition(".")[2]


def _storages(tensor: torch.Tensor) -> list[Any]:
    try:
        return [tensor.untyped_storage()]
    except (NotImplementedError, RuntimeError):   # sparse and other storage-less tensors
        return []


try:  # private API: keep the fallback importable and tested
    from torch.distributed._tools.mem_tracker import MemTracker, _UpdateType
except ImportError:  # pragma: no cover - depends on the torch build
    MemTracker = None  # type: ignore[assignment,misc]


if MemTracker is not None:
    class SplitMemTracker(MemTracker, _Split):  # type: ignore[misc,valid-type]
        """MemTracker plus the finer split; the per-op per-module peak scan is skipped."""

        def __init__(self, rule: PairwiseRule) -> None:
            MemTracker.__init__(self)
            self._split_init(rule)

        def register_state(self, tensors: Iterable[torch.Tensor], reftype_name: str) -> None:
            """Tag fake parameters/buffers up front (``track_external`` would tag "Other")."""
            from torch.distributed._tools.mem_tracker import _MemRefType
            reftype = _MemRefType(reftype_name)
            for tensor in tensors:
                self._update_and_maybe_create_winfos(tensor, reftype)

        def track_external(self, *external: Any) -> None:
            super().track_external(*external)
            for obj in external:
                if isinstance(obj, torch.optim.Optimizer):
                    for state in obj.state.values():
                        for value in state.values():
                            if isinstance(value, torch.Tensor):
                                self._flag(self._records_of(value), "state")

        def _update_snap(self, u_type, winfo, old_mem_consumed=None, old_reftype=None):  # noqa: ANN001,ANN202
            super()._update_snap(u_type, winfo, old_mem_consumed, old_reftype)
            if u_type is _UpdateType.ADD:
                self._assign(winfo, _innermost(self._mod_tracker.parents))
            elif u_type is _UpdateType.DEL:
                self._unassign(winfo)
            else:
                self._refresh(winfo)

        def _track(self, reftype, t):  # noqa: ANN001,ANN202
            super()._track(reftype, t)
            self._note_output(t, self._records_of(t))

        def _update_peak_stats(self, peak_state) -> None:  # noqa: ANN001
            # MemTracker also snapshots every active module on every op, a scan over all
            # tracked modules that takes 80% of a 12-layer GPT's run; only the global
            # peak is needed here.
            self._check_peak()

        def _parents(self) -> Iterable[str]:
            return self._mod_tracker.parents

        def _records_of(self, tensor: torch.Tensor) -> list[Any]:
            found = (self._WINFO.get(st, (None, None))[0] for st in _storages(tensor))
            return [winfo for winfo in found if winfo is not None]
else:  # pragma: no cover
    SplitMemTracker = None  # type: ignore[assignment,misc]


class _Record:
    """The fallback's bookkeeping for one storage."""

    def __init__(self, nbytes: int, reftype: str) -> None:
        self.mem_consumed = nbytes
        self.reftype = reftype


class _Ledger(TorchDispatchMode, _Split):
    """Fallback tracker: the same split without MemTracker, on public APIs only."""

    def __init__(self, rule: PairwiseRule) -> None:
        super().__init__()
        self._split_init(rule)
        self._records = WeakIdKeyDictionary()
        self._modules = ModuleTracker()
        self._handles: list[Any] = []

    def register_state(self, tensors: Iterable[torch.Tensor], reftype_name: str) -> None:
        for tensor in tensors:
            self._retag(tensor, reftype_name)
            if reftype_name == "Parameter" and tensor.requires_grad:
                self._handles.append(tensor.register_post_accumulate_grad_hook(
                    lambda param: self._retag(param.grad, "Gradient")))

    def track_external(self, *objects: Any) -> None:
        for obj in objects:
            if isinstance(obj, torch.optim.Optimizer):
                self._handles.append(obj.register_step_post_hook(
                    lambda opt, args, kwargs: self._tag_optimizer(opt)))
                self._tag_optimizer(obj)

    def _tag_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        for state in optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    self._retag(value, "Optstate")
                    self._flag(self._records_of(value), "state")

    def _retag(self, tensor: torch.Tensor, reftype: str) -> None:
        for storage in _storages(tensor):
            record = self._records.get(storage)
            if record is None:
                self._new_record(storage, reftype)
            elif record.reftype != reftype:
                record.reftype = reftype
                self._refresh(record)
        self._check_peak()

    def _new_record(self, storage: Any, reftype: str) -> _Record:
        record = _Record(storage.nbytes(), reftype)
        self._records[storage] = record
        self._assign(record, _innermost(self._modules.parents))
        weakref.finalize(storage, self._unassign, record)
        return record

    def _parents(self) -> Iterable[str]:
        return self._modules.parents

    def _records_of(self, tensor: torch.Tensor) -> list[Any]:
        found = (self._records.get(storage) for storage in _storages(tensor))
        return [record for record in found if record is not None]

    def __enter__(self) -> _Ledger:
        self._modules.__enter__()
        return super().__enter__()

    def __exit__(self, *args: Any) -> None:
        super().__exit__(*args)
        self._modules.__exit__(*args)
        for handle in self._handles:
            handle.remove()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001,ANN204
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                for storage in _storages(tensor):
                    if storage not in self._records:
                        self._new_record(storage, "Activation")
                self._note_output(tensor, self._records_of(tensor))
        self._check_peak()
        return out


def new_tracker(rule: PairwiseRule, fallback: bool = False) -> Any:
    """A MemTracker-based splitter, or the fallback when asked or when it is missing."""
    if fallback or SplitMemTracker is None:
        return _Ledger(rule)
    return SplitMemTracker(rule)
