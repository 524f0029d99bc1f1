"""FSDPMemTracker with what the per-device report needs: phases, state, collectives.

``torch.distributed._tools.fsdp2_mem_tracker.FSDPMemTracker`` follows every storage of
one rank through an FSDP2 step and tags it: sharded and unsharded (all-gathered)
parameters, sharded and unsharded gradients, activations, temporaries, the all-gather
and reduce-scatter buffers, optimizer state, inputs. :class:`StepTracker` adds

- the phase (forward, backward, optimizer) of the peak;
- the persistent state (sharded parameters, gradients, optimizer state) just before the
  optimizer step, when every gradient exists;
- the bytes of every collective the rank runs (FSDP's all-gathers and reduce-scatters,
  DTensor's functional collectives for TP, the replicate dimension's all-reduce);

and keeps only the global peak: the tracker's per-module peaks (a scan of every tracked
module on every op) are not used here.

Under CPU offload the fake world has one CPU device for everything, so the tracker
splits each snapshot itself: the reference types in ``host`` (FSDP2's
``CPUOffloadPolicy`` keeps sharded parameters, sharded gradients and optimizer state in
host memory, and runs the optimizer step there, so its temporaries are host memory too)
count as host memory; the peak is the peak of the rest, the device's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
from torch.distributed._tools.mem_tracker import _TOTAL_KEY
from torch.distributed.tensor import DTensor

#: FSDPMemTracker reference type -> the per-device category of the report
CATEGORY = {
    "Sharded Param": "parameters", "Buffer": "parameters",
    "Unsharded Param": "gathered_parameters",
    "Sharded Grad": "gradients", "Unsharded Grad": "gradients",
    "OptState": "optimizer",
    "Activation": "activations", "Inputs": "activations",
    "Temp": "temporaries",
    "All Gather": "communication", "Reduce Scatter": "communication",
}
CATEGORIES = ("parameters", "gradients", "optimizer", "gathered_parameters",
              "activations", "temporaries", "communication")

_DEVICE_QUERY = torch.ops.prim.device.default
_c10d = torch.ops.c10d
_functional = torch.ops._c10d_functional
#: collective op -> (kind, index of the argument whose bytes count, or None: the output)
COLLECTIVES = {
    _c10d._allgather_base_.default: ("all_gather", 0),
    _c10d._reduce_scatter_base_.default: ("reduce_scatter", 1),
    _c10d.allreduce_.default: ("all_reduce", 0),
    _functional.all_gather_into_tensor.default: ("all_gather", None),
    _functional.reduce_scatter_tensor.default: ("reduce_scatter", 0),
    _functional.all_reduce.default: ("all_reduce", 0),
    _functional.all_to_all_single.default: ("all_to_all", 0),
}


def _nbytes(value: Any) -> int:
    tensors = value if isinstance(value, (list, tuple)) else [value]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


class StepTracker(FSDPMemTracker):
    """One rank's memory through one step, by category, with its collectives."""

    def __init__(self, module: torch.nn.Module, optimizer: Any,
                 host: frozenset[str] = frozenset()) -> None:
        super().__init__(module, optimizer)
        self.host = host
        self.host_peak: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self.peak_phase = "forward"
        self.state: dict[str, int] = {}
        self.saved: dict[str, int] = {}
        self.collectives: dict[str, int] = {"all_gather": 0, "reduce_scatter": 0,
                                            "all_reduce": 0, "all_to_all": 0}

    def _phase(self) -> str:
        if self._in_opt:
            return "optimizer"
        return "backward" if self._mod_tracker.is_bw else "forward"

    def _on_host(self, reftype: Any) -> bool:
        name = getattr(reftype, "value", reftype)
        return name in self.host or (bool(self.host) and self._in_opt and name == "Temp")

    def _update_peak_stats(self, peak_state: Any) -> None:
        if not self.host:                    # every byte on the device: FSDPMemTracker's rule
            for device, snapshot in self._curr_mem_snap.items():
                if self._peak_mem.get(device, 0) < snapshot[_TOTAL_KEY]:
                    self._peak_mem[device] = snapshot[_TOTAL_KEY]
                    self._peak_mem_snap[device] = dict(snapshot)
                    self.peak_phase = self._phase()
            return
        for device, snapshot in self._curr_mem_snap.items():
            here = {t: n for t, n in snapshot.items() if t != _TOTAL_KEY
                    and not self._on_host(t)}
            total = sum(here.values())
            if self.host:
                host = split({device: {t: n for t, n in snapshot.items()
                                       if t != _TOTAL_KEY and self._on_host(t)}})
                if sum(host.values()) > sum(self.host_peak.values()):
                    self.host_peak = host
            if self._peak_mem.get(device, 0) < total:
                self._peak_mem[device] = total
                self._peak_mem_snap[device] = {**here, _TOTAL_KEY: total}
                self.peak_phase = self._phase()

    def __enter__(self) -> StepTracker:
        super().__enter__()
        if self._depth == 1:                 # the entry snapshot counted the host's share
            self._peak_mem, self._peak_mem_snap = {}, {}
            self._update_peak_stats(None)
        return self

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001,ANN204
        if func is _DEVICE_QUERY and DTensor not in types:
            # two in three ops of an FSDP2 step ask a tensor its device (foreach grouping,
            # FSDP's copy-in/out): nothing is allocated or freed, no peak can move, so
            # the tracker's bookkeeping is skipped
            return func(*args, **(kwargs or {}))
        if func in COLLECTIVES:
            kind, index = COLLECTIVES[func]
            counted = (args[index] if index is not None else None)
            if counted is not None:
                self.collectives[kind] += _nbytes(counted)
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if func in COLLECTIVES and COLLECTIVES[func][1] is None and out is not NotImplemented:
            self.collectives[COLLECTIVES[func][0]] += _nbytes(out)
        return out

    def mark_forward(self) -> None:
        """Record what the forward left alive (the activations saved for backward)."""
        self.saved = split(self.get_tracker_snapshot())

    def mark_state(self) -> None:
        """Record the persistent state now (call with every gradient reduced)."""
        self.state = split(self.get_tracker_snapshot())

    def peak_parts(self) -> dict[str, int]:
        return split(self.get_tracker_snapshot("peak"))


def split(snapshot: dict[Any, dict[Any, int]]) -> dict[str, int]:
    """Bytes per report category, summed over devices (one fake CPU device here)."""
    parts = dict.fromkeys(CATEGORIES, 0)
    for per_type in snapshot.values():
        for reftype, nbytes in per_type.items():
            name = getattr(reftype, "value", reftype)
            if name in CATEGORY:
                parts[CATEGORY[name]] += nbytes
    return parts
