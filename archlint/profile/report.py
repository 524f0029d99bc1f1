"""The profile section: measured beside predicted, one row per length.

``measured`` is torch's allocator (what the prediction models); ``RSS +step`` is what
the step added to the process's resident memory from every allocator, so memory the
model takes outside torch (numpy, Python objects) shows beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from archlint.profile.measure import Measurement
from archlint.units import format_bytes


@dataclass(frozen=True)
class ProfileRow:
    """One length: the prediction, and the measurement unless the run was refused."""

    seq_len: int
    predicted: int | None                 # bytes
    measured: Measurement | None
    status: str = "measured"              # "measured" | "refused: ..." | "not predicted: ..."
    trace: str | None = None              # directory holding this length's trace

    @property
    def error(self) -> float | None:
        """(predicted − measured) / measured."""
        if self.predicted is None or self.measured is None or not self.measured.peak:
            return None
        return (self.predicted - self.measured.peak) / self.measured.peak

    def to_dict(self) -> dict[str, Any]:
        m = self.measured
        return {
            "seq_len": self.seq_len, "status": self.status,
            "predicted_peak_bytes": self.predicted,
            "measured_peak_bytes": None if m is None else m.peak,
            "measured_rss_step_bytes": None if m is None else m.rss_step,
            "relative_error": None if self.error is None else round(self.error, 6),
            "forward_ms": None if m is None else round(m.forward_s * 1e3, 3),
            "backward_ms": None if m is None else round(m.backward_s * 1e3, 3),
            "step_ms": None if m is None else round(m.step_s * 1e3, 3),
            "tokens_per_s": None if m is None else round(m.tokens_per_s, 1),
            "trace": self.trace,
        }


@dataclass
class ProfileReport:
    """A measured profile across lengths (the :class:`archlint.report.Section` protocol)."""

    model: str
    mode: str
    device: str
    free_memory: int                      # bytes the process could take when it started
    memory_limit: str = "MemAvailable"    # which limit that was (see archlint.memlimit)
    rows: list[ProfileRow] = field(default_factory=list)
    trace_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "mode": self.mode, "device": self.device,
                "free_memory_bytes": self.free_memory, "memory_limit": self.memory_limit,
                "trace_dir": self.trace_dir,
                "lengths": [row.to_dict() for row in self.rows]}

    def render_text(self) -> str:
        lines = [f"Profile of {self.model}: one {self.mode} step on {self.device} "
                 f"({format_bytes(self.free_memory)} free: {self.memory_limit})"]
        table = []
        for row in self.rows:
            m = row.measured
            table.append([
                row.seq_len,
                "-" if row.predicted is None else format_bytes(row.predicted),
                "-" if m is None else format_bytes(m.peak),
                "-" if m is None or m.rss_step is None else format_bytes(m.rss_step),
                "-" if row.error is None else f"{row.error:+.1%}",
                "-" if m is None else f"{m.forward_s * 1e3:.1f}",
                "-" if m is None or self.mode != "train" else f"{m.backward_s * 1e3:.1f}",
                "-" if m is None else f"{m.tokens_per_s:,.0f}",
                row.status,
            ])
        lines.append(tabulate(table, headers=["n", "predicted", "measured", "RSS +step",
                                              "error", "fwd ms", "bwd ms", "tokens/s",
                                              "status"],
                              tablefmt="simple", disable_numparse=True))
        if self.trace_dir and any(row.trace for row in self.rows):
            lines.append(f"  traces: {self.trace_dir} (TensorBoard with torch-tb-profiler: "
                         f"tensorboard --logdir {self.trace_dir}; or open a *.pt.trace.json "
                         "in https://ui.perfetto.dev)")
        return "\n".join(lines)
