"""Peak memory of one step, split by what holds the bytes at the peak.

PyTorch's ``MemTracker`` (``torch.distributed._tools.mem_tracker``) does the accounting:
it follows every storage an op creates, frees it when the storage dies, and tags it
parameter, buffer, gradient, optimizer state, activation or temporary through module,
gradient and optimizer hooks. Under ``FakeTensorMode`` it reproduced a real CPU run of a
GPT block to the byte. It is a private API, so :mod:`.trackers` keeps a small
self-contained fallback with the same split.

What archlint adds is a finer split of the activation bytes at the peak:

- ``activations``: tensors autograd saved for backward (seen by a pack hook),
- ``attention_scores``: pairwise tensors, two of whose dimensions are the token count n
  (``softmax(QKᵀ)`` and everything of that shape),
- ``workspace``: everything else alive at the moment (transients, activation gradients),
- ``kv_cache``: the decode mode's cache (added by :mod:`archlint.cost.decode`),

and the module that allocated each storage, so a finding can point at a layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

CATEGORIES = ("parameters", "gradients", "optimizer", "activations",
              "attention_scores", "workspace", "kv_cache")
LABELS = {
    "parameters": "parameters", "gradients": "gradients", "optimizer": "optimizer state",
    "activations": "activations", "attention_scores": "attention scores",
    "workspace": "workspace", "kv_cache": "KV cache",
}
#: MemTracker reference types (``_MemRefType`` values) that map to one category directly
_BASE = {"Parameter": "parameters", "Buffer": "parameters", "Gradient": "gradients",
         "Optstate": "optimizer"}


@dataclass(frozen=True)
class MemoryBreakdown:
    """The bytes alive at the peak of one step, by category and by allocating module."""

    peak: int
    parts: dict[str, int]
    phase: str                                    # forward | backward | optimizer | decode
    owners: dict[str, dict[str, int]] = field(default_factory=dict)   # category -> module -> bytes
    stage: str = ""                               # top-level module running at the peak

    def dominant(self) -> tuple[str, int]:
        """The largest category (ties broken by the order of :data:`CATEGORIES`)."""
        return max(((c, self.parts.get(c, 0)) for c in CATEGORIES), key=lambda item: item[1])

    def top_owner(self, category: str) -> str | None:
        """The deepest module that allocated more than half of ``category`` at the peak.

        Activations spread over 12 identical blocks name ``blocks``, not one of them.
        """
        owners = self.owners.get(category) or {}
        total = sum(owners.values())
        if not total:
            return None
        under: dict[str, int] = {}
        for owner, nbytes in owners.items():
            parts = owner.split(".") if owner else []
            for depth in range(len(parts) + 1):
                prefix = ".".join(parts[:depth])
                under[prefix] = under.get(prefix, 0) + nbytes
        majority = [p for p, nbytes in under.items() if 2 * nbytes > total]
        return max(sorted(majority), key=lambda p: p.count(".") + bool(p))


@dataclass(frozen=True)
class PairwiseRule:
    """Which tensors are attention scores: two dimensions equal to the token count n.

    When n coincides with a model dimension (n = d_model = 512 makes a (B, n, d) tensor
    look pairwise) the rule also requires the tensor to come from inside a classified
    attention layer below the root (a root-level attention cannot be told apart: its
    scores then go uncounted, and the report says so).
    """

    tokens: int
    ambiguous: bool = False
    scopes: tuple[str, ...] = ()          # module paths of the attention layers

    def matches(self, shape: Any, modules: Iterable[str]) -> bool:
        if sum(1 for size in shape if size == self.tokens) < 2:
            return False
        if not self.ambiguous:
            return True
        return any(_within(module, scope) for module in modules for scope in self.scopes)


def _within(module: str, scope: str) -> bool:
    return bool(scope) and (module == scope or module.startswith(scope + "."))


def overall(phases: dict[str, MemoryBreakdown]) -> MemoryBreakdown:
    """The highest of the phase peaks (the first phase wins a tie)."""
    best = None
    for breakdown in phases.values():
        if best is None or breakdown.peak > best.peak:
            best = breakdown
    if best is None:
        return MemoryBreakdown(peak=0, parts=dict.fromkeys(CATEGORIES, 0), phase="forward")
    return best


class _Split:
    """Running totals per category and per (category, module); the snapshot at the peak.

    A *record* is one storage's bookkeeping object (MemTracker's ``_WeakRefInfo`` or the
    fallback's ``_Record``); it carries ``reftype`` and ``mem_consumed``, and this class
    adds ``al_cat``, ``al_owner``, ``al_bytes`` and ``al_flags`` to it.
    """

    def _split_init(self, rule: PairwiseRule) -> None:
        self.rule = rule
        self.phase = "forward"
        self.totals = dict.fromkeys(CATEGORIES, 0)
        self._by_owner: dict[tuple[str, str], int] = {}
        self.phase_peaks: dict[str, int] = {}
        self._snapshots: dict[str, tuple[dict[str, int], dict[tuple[str, str], int]]] = {}
        #: the storages allocated and freed, in order, when asked for
        #: (:meth:`log_allocations`): what :mod:`archlint.cost.allocator` replays
        self.allocation_events: list[tuple[int, int | None]] | None = None
        self._serial = 0

    def log_allocations(self) -> None:
        self.allocation_events = []

    def _category(self, record: Any) -> str:
        reftype = getattr(record.reftype, "value", record.reftype)
        flags = getattr(record, "al_flags", ())
        if reftype == "Optstate" and "state" not in flags:
            return "workspace"              # MemTracker tags the step's temporaries too
        if reftype in _BASE:
            return _BASE[reftype]
        if "kv" in flags:
            return "kv_cache"
        if "pairwise" in flags:
            return "attention_scores"
        return "activations" if "saved" in flags else "workspace"

    def _assign(self, record: Any, owner: str) -> None:
        if not hasattr(record, "al_flags"):
            record.al_flags = set()
        record.al_owner = owner
        record.al_cat = self._category(record)
        record.al_bytes = record.mem_consumed
        self._add(record.al_cat, owner, record.al_bytes)
        if self.allocation_events is not None:
            self._serial += 1
            record.al_serial = self._serial
            self.allocation_events.append((self._serial, record.al_bytes))

    def _unassign(self, record: Any) -> None:
        if hasattr(record, "al_cat"):
            self._add(record.al_cat, record.al_owner, -record.al_bytes)
            del record.al_cat
            if self.allocation_events is not None and hasattr(record, "al_serial"):
                self.allocation_events.append((record.al_serial, None))

    def _refresh(self, record: Any) -> None:
        """Move a record's bytes when its category or size changed."""
        if not hasattr(record, "al_cat"):
            return
        category = self._category(record)
        if category != record.al_cat or record.mem_consumed != record.al_bytes:
            if self.allocation_events is not None and hasattr(record, "al_serial") \
                    and record.mem_consumed != record.al_bytes:
                self.allocation_events.append((record.al_serial, None))   # a resize
                self._serial += 1
                record.al_serial = self._serial
                self.allocation_events.append((self._serial, record.mem_consumed))
            self._add(record.al_cat, record.al_owner, -record.al_bytes)
            record.al_cat, record.al_bytes = category, record.mem_consumed
            self._add(category, record.al_owner, record.al_bytes)

    def _add(self, category: str, owner: str, nbytes: int) -> None:
        self.totals[category] += nbytes
        key = (category, owner)
        self._by_owner[key] = self._by_owner.get(key, 0) + nbytes

    def _flag(self, records: Iterable[Any], flag: str) -> None:
        for record in records:
            if not hasattr(record, "al_flags"):
                record.al_flags = set()
            if flag not in record.al_flags:
                record.al_flags.add(flag)
                self._refresh(record)

    def _note_output(self, tensor: torch.Tensor, records: list[Any]) -> None:
        owners = [getattr(record, "al_owner", "") for record in records]
        if records and self.rule.matches(tensor.shape, owners):
            self._flag(records, "pairwise")

    def _check_peak(self) -> None:
        total = sum(self.totals.values())
        key = (self.phase, _top_level(self._parents()))
        if total > self.phase_peaks.get(key, -1):
            self.phase_peaks[key] = total
            self._snapshots[key] = (dict(self.totals), dict(self._by_owner))

    def breakdowns(self) -> dict[str, MemoryBreakdown]:
        """The peak of each stage, keyed ``phase:module``, in the order they ran.

        A stage is one phase (forward, backward, optimizer) of one top-level module. Their
        maximum is the step's peak; kept apart, each is a polynomial in n of its own, which
        is what extrapolation needs (the overall maximum switches stages as n grows).
        """
        result = {}
        for (phase, stage), (parts, by_owner) in self._snapshots.items():
            owners: dict[str, dict[str, int]] = {}
            for (category, owner), nbytes in sorted(by_owner.items()):
                if nbytes > 0:
                    owners.setdefault(category, {})[owner] = nbytes
            result[f"{phase}:{stage}"] = MemoryBreakdown(
                peak=self.phase_peaks[(phase, stage)], parts=parts, phase=phase,
                owners=owners, stage=stage)
        return result

    def _parents(self) -> Iterable[str]:
        raise NotImplementedError

    def saved_tensor_hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        """Pack hook that marks every storage autograd keeps for backward as saved."""
        def pack(tensor: torch.Tensor) -> torch.Tensor:
            self._flag(self._records_of(tensor), "saved")
            return tensor
        return torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)

    def flag_kv_cache(self, tensor: torch.Tensor) -> None:
        self._flag(self._records_of(tensor), "kv")
        self._check_peak()

    def register_kv_cache(self, tensors: Iterable[torch.Tensor]) -> None:
        """Count a decode step's cache, built before the tracker started, as KV cache."""
        tensors = list(tensors)
        self.register_state(tensors, "Other")
        for tensor in tensors:
            self.flag_kv_cache(tensor)

    def register_state(self, tensors: Iterable[torch.Tensor], reftype_name: str) -> None:
        raise NotImplementedError

    def _records_of(self, tensor: torch.Tensor) -> list[Any]:
        raise NotImplementedError


def _top_level(parents: Iterable[str]) -> str:
    """Path of the active child of the root module ("" when only the root runs)."""
    tops = sorted(name.split(".")[1] for name in parents if name.count(".") >= 1)
    return tops[0] if tops else ""
