"""The parallel section of a report: what one device holds under the layout.

:class:`ParallelReport` implements the :class:`archlint.report.Section` protocol. JSON
keys: ``layout`` (degrees, ``devices``, ``zero``, ``sharded_over``, ``checkpoint``,
``offload``), ``method``, ``blocks``, ``tensor_parallel`` (``colwise``, ``rowwise``,
``unplanned``), ``lengths`` (per ``--seq-len``: ``seq_len``, ``peak_bytes``, ``memory``
by category, ``peak_phase``, ``state`` (parameters, gradients, optimizer before the
step), ``communication`` (bytes per step by collective), ``fits``), ``failures``,
``budget_bytes``, ``fits_up_to``, ``smallest_layout``, ``violations``, ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from archlint.parallel.layout import Layout
from archlint.parallel.plan import Plan
from archlint.parallel.simulate import DeviceStep
from archlint.parallel.tracker import CATEGORIES
from archlint.units import format_bytes

METHOD = ("simulated: FSDP2 fully_shard / DTensor on a fake process group, "
          "FSDPMemTracker on fake tensors")
#: category -> its name, true at every ZeRO stage (what is sharded: :func:`labels`)
LABELS = {"parameters": "parameters", "gradients": "gradients",
          "optimizer": "optimizer state", "gathered_parameters": "gathered parameters",
          "activations": "activations", "temporaries": "temporaries",
          "communication": "comm. buffers"}
#: ZeRO stage -> what the per-device table says of the persistent state. ZeRO-1
#: (FSDP2's replicate) keeps parameters and gradients whole and partitions the optimizer
#: state; the "gathered" parameters are replicate's compute copies. ZeRO-2 shards
#: gradients too; FSDP2 stores a parameter shard and keeps the whole parameters gathered
#: from forward through the step. ZeRO-3 shards all three.
_STAGE_LABELS = {
    1: {"parameters": "parameters (whole)", "gradients": "gradients (whole)",
        "optimizer": "optimizer state (partition)",
        "gathered_parameters": "parameter compute copies"},
    2: {"parameters": "parameters (shard)", "gradients": "gradients (shard)",
        "optimizer": "optimizer state (shard)",
        "gathered_parameters": "gathered parameters (whole)"},
    3: {"parameters": "parameters (shard)", "gradients": "gradients (shard)",
        "optimizer": "optimizer state (shard)"},
}


def labels(layout: Layout) -> dict[str, str]:
    """The table's row names under ``layout``: unqualified when nothing is sharded."""
    if layout.shard == 1:
        return dict(LABELS)
    return {**LABELS, **_STAGE_LABELS[layout.zero]}
COLLECTIVE_LABELS = {"all_gather": "all-gathered", "reduce_scatter": "reduce-scattered",
                     "all_reduce": "all-reduced", "all_to_all": "all-to-all"}


@dataclass(frozen=True)
class Search:
    """An answer found by simulating candidates: the value and how it was reached."""

    value: Any                          # an int (n) or a Layout; None: nothing fits
    tried: tuple[str, ...]              # what was simulated, in order ("n=4096: 1.2 GB")
    exact: bool = True                  # False: the search stopped at its bound


@dataclass
class ParallelReport:
    """Per-device memory and communication of one step under a layout."""

    layout: Layout
    plan: Plan
    budget: int | None
    steps: list[DeviceStep] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    fits_up_to: Search | None = None
    smallest_layout: Search | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def target(self) -> DeviceStep | None:
        return max(self.steps, key=lambda step: step.seq_len, default=None)

    def at(self, seq_len: int) -> DeviceStep | None:
        return next((step for step in self.steps if step.seq_len == seq_len), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout.to_dict(),
            "method": METHOD,
            "blocks": list(self.plan.blocks),
            "tensor_parallel": {"colwise": list(self.plan.colwise),
                                "rowwise": list(self.plan.rowwise),
                                "unplanned": list(self.plan.unplanned)},
            "lengths": [self._entry(step) for step in self.steps],
            "failures": {str(n): reason for n, reason in sorted(self.failures.items())},
            "budget_bytes": self.budget,
            "fits_up_to": _search_dict(self.fits_up_to),
            "smallest_layout": _search_dict(self.smallest_layout),
            "violations": [{"dimension": v.dimension, "message": v.message, "fix": v.fix,
                            "layer": v.layer,
                            "location": None if v.location is None else
                            {"file": v.location.file, "line": v.location.line}}
                           for v in self.plan.violations],
            "notes": list(self.notes),
        }

    def _entry(self, step: DeviceStep) -> dict[str, Any]:
        return {
            "seq_len": step.seq_len, "peak_bytes": step.peak,
            "memory": {c: step.parts.get(c, 0) for c in CATEGORIES},
            "peak_phase": step.phase,
            "state": {c: step.state.get(c, 0) for c in ("parameters", "gradients", "optimizer")},
            "saved_activation_bytes": step.saved.get("activations", 0),
            "communication": {f"{kind}_bytes": nbytes
                              for kind, nbytes in step.collectives.items()},
            "fits": None if self.budget is None else step.peak <= self.budget,
            "method": step.method,
            "formula": list(step.formula),
            "host_bytes": sum(step.host.values()),
            "host": {c: step.host.get(c, 0) for c in ("parameters", "gradients", "optimizer",
                                                      "temporaries")},
        }

    def render_text(self) -> str:
        lines = [f"Per device under {self.layout.describe()}"]
        for violation in self.plan.violations:
            lines.append(f"  layout does not divide the model: {violation.message}")
        if self.steps:
            lines.append(self._table())
        if self.plan.colwise or self.plan.rowwise:
            lines.append(f"  tensor parallel: {len(self.plan.colwise)} Linear colwise, "
                         f"{len(self.plan.rowwise)} rowwise (derived plan)")
        if self.fits_up_to is not None:
            value = self.fits_up_to.value
            lines.append(f"  fits {format_bytes(self.budget)} per device up to "
                         f"n={'' if self.fits_up_to.exact else '≥'}{value}" if value else
                         f"  does not fit {format_bytes(self.budget)} per device at any n")
        if self.smallest_layout is not None:
            found = self.smallest_layout.value
            lines.append(f"  smallest layout that fits: {found.text()} ({found.devices} "
                         "devices)" if found is not None else
                         "  no layout within the search fits: "
                         + "; ".join(self.smallest_layout.tried[-2:]))
        for step in self.steps:
            if step.method != "simulated":
                lines.append(f"  n={step.seq_len}: {step.method}")
        for text in dict.fromkeys(t for step in self.steps for t in step.formula):
            lines.append(f"  formula: {text}")
        for n, reason in sorted(self.failures.items()):
            lines.append(f"  n={n}: not simulated: {reason}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def _table(self) -> str:
        steps = self.steps
        names = labels(self.layout)
        rows = [["peak per device"] + [format_bytes(s.peak) for s in steps]]
        for category in CATEGORIES:
            values = [s.parts.get(category, 0) for s in steps]
            if any(values):
                rows.append(["  " + names[category]]
                            + [format_bytes(v) if v else "-" for v in values])
        rows.append(["state (p+g+opt)"]
                    + [format_bytes(sum(s.state.get(c, 0) for c in
                                        ("parameters", "gradients", "optimizer")))
                       for s in steps])
        if any(s.host for s in steps):
            rows.append(["host memory (offload)"]
                        + [format_bytes(sum(s.host.values())) for s in steps])
        for kind, label in COLLECTIVE_LABELS.items():
            values = [s.collectives.get(kind, 0) for s in steps]
            if any(values):
                rows.append([f"{label}/step"] + [format_bytes(v) for v in values])
        if self.budget is not None:
            rows.append(["fits the budget"]
                        + ["yes" if s.peak <= self.budget else "NO" for s in steps])
        head = ["n"] + [str(s.seq_len) for s in steps]
        return tabulate(rows, headers=head, tablefmt="simple", disable_numparse=True,
                        colalign=("left",) + ("right",) * len(steps))


def _search_dict(search: Search | None) -> dict[str, Any] | None:
    if search is None:
        return None
    value = search.value.to_dict() if isinstance(search.value, Layout) else search.value
    return {"value": value, "exact": search.exact, "tried": list(search.tried)}
