"""The cost section of a report: peak memory and FLOPs at each length, curve, budget.

:class:`CostReport` implements the :class:`archlint.report.Section` protocol. JSON keys:
``lengths`` (one entry per ``--seq-len``: ``seq_len``, ``peak_bytes``, ``memory`` by
category, ``flops``, ``flops_forward``, ``flops_backward``, ``attention_flops``,
``fits``), ``curve`` (grid, growth orders, ``fits_up_to``, ``crossover``) and the run's
``mode``, ``dtype``, ``batch``, ``optimizer``, ``budget_bytes`` and ``device``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from archlint.cost.curves import Curve
from archlint.cost.devices import find_device
from archlint.cost.memory import CATEGORIES, LABELS
from archlint.cost.predict import Prediction
from archlint.units import format_bytes, format_count


@dataclass
class CostReport:
    """Predicted cost of one step of the model at every length asked for."""

    mode: str
    dtype: str
    batch: int
    optimizer: str
    budget: int | None                        # bytes
    device: str | None
    predictions: list[Prediction]
    curve: Curve | None = None
    failures: dict[int, str] = field(default_factory=dict)    # seq_len -> reason
    notes: list[str] = field(default_factory=list)
    cuda_context: int | None = None           # the user's CUDA context (config), bytes

    def at(self, seq_len: int) -> Prediction | None:
        for prediction in self.predictions:
            if prediction.seq_len == seq_len:
                return prediction
        return None

    @property
    def target(self) -> Prediction | None:
        """The prediction at the longest length that could be predicted."""
        return max(self.predictions, key=lambda p: p.seq_len, default=None)

    def budget_label(self) -> str:
        if self.budget is None:
            return "no budget"
        gpu = find_device(self.device, self.cuda_context)
        if gpu is not None and gpu.usable == self.budget:
            return f"{self.device} ({format_bytes(self.budget)} usable)"
        if gpu is not None:
            return f"{format_bytes(self.budget)} on {self.device}"
        return format_bytes(self.budget)

    def device_lines(self) -> list[str]:
        """What the prediction is for: this CPU, or a GPU with the parts of its memory no
        tensor gets, and the attention kernel each layer runs there."""
        gpu = find_device(self.device, self.cuda_context)
        if gpu is None:
            return ["  device: cpu (this machine's kernels; --device names a GPU)"]
        lines = [f"  device: {gpu.name} ({gpu.description}, sm {gpu.sm[0]}.{gpu.sm[1]}, "
                 f"{format_bytes(gpu.total)}): CUDA context "
                 f"{'≈ ' if gpu.context_override is None else '(configured) '}"
                 f"{format_bytes(gpu.context)}, "
                 f"cuBLAS workspace {format_bytes(gpu.cublas_workspace)}, allocator headroom "
                 f"{format_bytes(gpu.allocator_headroom)}, outside the usable memory"]
        target = self.target
        for (backend, reason), modules in _grouped(target.kernels if target else ()):
            where = modules[0] or "<root>"
            if len(modules) > 1:
                where += f" and {len(modules) - 1} more"
            lines.append(f"  attention kernel: {where}: {backend} ({reason})")
        return lines

    def to_dict(self) -> dict[str, Any]:
        gpu = find_device(self.device, self.cuda_context)
        return {
            "mode": self.mode, "dtype": self.dtype, "batch": self.batch,
            "optimizer": self.optimizer, "budget_bytes": self.budget, "device": self.device,
            "device_memory": None if gpu is None else {
                "total_bytes": gpu.total, "sm": f"{gpu.sm[0]}.{gpu.sm[1]}",
                "cuda_context_bytes": gpu.context,
                "cublas_workspace_bytes": gpu.cublas_workspace,
                "allocator_headroom_bytes": gpu.allocator_headroom,
                "usable_bytes": gpu.usable},
            "lengths": [self._entry(p) for p in self.predictions],
            "failures": {str(n): reason for n, reason in sorted(self.failures.items())},
            "curve": None if self.curve is None else self.curve.to_dict(),
            "notes": list(self.notes),
        }

    def _entry(self, prediction: Prediction) -> dict[str, Any]:
        dominant, _ = prediction.memory.dominant()
        return {
            "seq_len": prediction.seq_len,
            "peak_bytes": prediction.peak,
            "memory": {c: prediction.memory.parts.get(c, 0) for c in CATEGORIES},
            "dominant": dominant,
            "peak_phase": prediction.memory.phase,
            "peak_module": prediction.memory.stage or None,
            "flops": prediction.flops,
            "flops_forward": prediction.flops_forward,
            "flops_backward": prediction.flops_backward,
            "attention_flops": prediction.attention_flops,
            "fits": None if self.budget is None else prediction.peak <= self.budget,
            "method": prediction.method,
            "kv_cache_bytes": prediction.kv_cache_bytes if self.mode == "decode" else None,
            "allocator": None if prediction.allocator_peaks is None else {
                "allocated_bytes": prediction.allocator_peaks[0],
                "reserved_bytes": prediction.allocator_peaks[1]},
            "attention_kernels": [choice.to_dict() for choice in prediction.kernels],
        }

    def _table(self) -> str:
        """One column per length, one row per quantity: fits 80 columns for 4 lengths."""
        predictions = self.predictions
        rows = [["peak memory"] + [format_bytes(p.peak) for p in predictions]]
        for category in CATEGORIES:
            values = [p.memory.parts.get(category, 0) for p in predictions]
            if any(values):
                rows.append(["  " + LABELS[category]]
                            + [format_bytes(v) if v else "-" for v in values])
        if any(p.allocator_peaks for p in predictions):
            for label, index in (("allocated (blocks)", 0), ("reserved (segments)", 1)):
                rows.append([label] + [format_bytes(p.allocator_peaks[index])
                                       if p.allocator_peaks else "-" for p in predictions])
        rows.append(["FLOPs"] + [format_count(p.flops) for p in predictions])
        rows.append(["  attention share"]
                    + [f"{p.attention_flops / p.flops:.0%}" if p.flops else "-"
                       for p in predictions])
        if self.budget is not None:
            rows.append(["fits the budget"]
                        + ["yes" if p.peak <= self.budget else "NO" for p in predictions])
        head = ["n"] + [str(p.seq_len) for p in predictions]
        return tabulate(rows, headers=head, tablefmt="simple", disable_numparse=True,
                        colalign=("left",) + ("right",) * len(predictions))

    def render_text(self) -> str:
        lines = [f"Cost of one {self.mode} step (batch {self.batch}, {self.dtype}"
                 + (f", {self.optimizer}" if self.mode == "train" else "")
                 + f"; budget: {self.budget_label()})"]
        lines.extend(self.device_lines())
        if self.predictions:
            lines.append(self._table())
        if self.curve is not None:
            curve = self.curve
            lines.append(f"  growth: memory {curve.memory_order}, FLOPs {curve.flops_order} "
                         f"(over n={curve.lengths[0]}..{curve.lengths[-1]})")
            if curve.peaks and curve.attention_bytes[-1]:
                share = curve.attention_bytes[-1] / curve.peaks[-1]
                lines.append(f"  attention scores: {share:.0%} of the peak at "
                             f"n={curve.lengths[-1]}")
            if curve.fits_up_to is not None:
                bound = "" if curve.fits_exact else "at least "
                lines.append(f"  fits {self.budget_label()} up to n={bound}{curve.fits_up_to}"
                             if curve.fits_up_to else
                             f"  does not fit {self.budget_label()} even at n=1")
            if curve.crossover is not None:
                lines.append(f"  attention FLOPs overtake the rest of the step at "
                             f"n≈{curve.crossover}")
        for n, reason in sorted(self.failures.items()):
            lines.append(f"  n={n}: not predicted: {reason}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


def _grouped(choices) -> list[tuple[tuple[str, str], list[str]]]:
    """Kernel choices grouped by (backend, reason), modules in first-seen order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for choice in choices:
        groups.setdefault((choice.backend, choice.reason), []).append(choice.module)
    return list(groups.items())
