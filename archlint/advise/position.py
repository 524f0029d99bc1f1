"""Where a model stands on the two axes, and what the user asked of it.

A :class:`Standing` is the answer archlint's analyses give for one state of the model
(the model as it is, or the model with one change applied) at one length: receptive
field R, dependency path L(span), serial steps S(n) from the reach analysis, peak memory
and FLOPs of one step from the cost analysis. :class:`Goals` holds what ``advise`` was
asked (``--span``, ``--memory``, ``--latency``, ``--max-serial-steps``) and judges a
standing against it with the thresholds the rules use (AL102's path threshold, AL301's
milliseconds per serial step), so "reaches" and "fits" mean what ``archlint check``
means by them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from archlint.units import format_bytes, format_count

INF = math.inf


@dataclass(frozen=True)
class Goals:
    """The budgets and the span one advice is for."""

    seq_len: int
    span: int | None
    budget: int | None                  # bytes
    budget_label: str
    latency_ms: float | None
    max_serial_steps: int | None
    ms_per_step: float                  # AL301's per-step cost
    max_path: int                       # AL102's threshold on the dependency path

    @classmethod
    def of(cls, settings: Any, budget_label: str) -> Goals:
        from archlint.rules.recurrent_path_too_long import RecurrentPathTooLong
        from archlint.rules.serial_steps_over_budget import SerialStepsOverBudget

        return cls(
            seq_len=settings.target_len, span=settings.span, budget=settings.memory,
            budget_label=budget_label, latency_ms=settings.latency_ms,
            max_serial_steps=settings.max_serial_steps,
            ms_per_step=float(settings.rule_option(
                "AL301", "ms_per_step", SerialStepsOverBudget.options["ms_per_step"])),
            max_path=int(settings.rule_option(
                "AL102", "threshold", RecurrentPathTooLong.options["threshold"])))


@dataclass(frozen=True)
class Standing:
    """R / L(span) / S and peak / FLOPs of one model state at one length."""

    seq_len: int
    batch: int
    receptive_field: str                # "n (causal prefix)", "31"
    receptive_size: float               # positions at seq_len (capped at seq_len)
    dependency_path: float | None       # L(span - 1) in hops (inf: unreachable)
    serial_steps: int
    peak: int                           # bytes of one step
    flops: int                          # of one step
    fits: bool | None = None            # None: no budget
    reaches: bool | None = None         # None: no span
    on_time: bool | None = None         # None: no latency or step budget

    def judged(self, goals: Goals) -> Standing:
        """This standing with ``fits`` / ``reaches`` / ``on_time`` set from ``goals``."""
        fits = None if goals.budget is None else self.peak <= goals.budget
        reaches = None
        if goals.span is not None:
            path = self.dependency_path
            reaches = (self.receptive_size >= min(goals.span, self.seq_len)
                       and goals.span <= self.seq_len
                       and path is not None and path <= goals.max_path)
        on_time = None
        if goals.latency_ms is not None or goals.max_serial_steps is not None:
            on_time = ((goals.latency_ms is None
                        or self.serial_steps * goals.ms_per_step <= goals.latency_ms)
                       and (goals.max_serial_steps is None
                            or self.serial_steps <= goals.max_serial_steps))
        return replace(self, fits=fits, reaches=reaches, on_time=on_time)

    @property
    def unmet(self) -> int:
        """How many of the asked goals this standing misses."""
        return sum(1 for ok in (self.fits, self.reaches, self.on_time) if ok is False)

    def latency_ms(self, goals: Goals) -> float:
        return self.serial_steps * goals.ms_per_step

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len, "batch": self.batch,
            "receptive_field": self.receptive_field,
            "receptive_field_at_target": _number(self.receptive_size),
            "dependency_path": _number(self.dependency_path),
            "serial_steps": self.serial_steps,
            "peak_bytes": self.peak, "flops": self.flops,
            "fits": self.fits, "reaches": self.reaches, "on_time": self.on_time,
        }

    def summary(self) -> str:
        """``R n (causal prefix), L 1, S 12; peak 34.7 GB, 162.8 TFLOPs``."""
        return (f"R {self.receptive_field}, L {_text(self.dependency_path)}, "
                f"S {self.serial_steps}; peak {format_bytes(self.peak)}, "
                f"{format_count(self.flops)}FLOPs")


def position_of(report: Any, goals: Goals) -> Standing:
    """The model's own standing at the target length, from its report."""
    reach, cost = report.reach, report.cost
    n = goals.seq_len
    prediction = cost.at(n) or cost.target
    rf = reach.receptive_field
    return Standing(
        seq_len=prediction.seq_len, batch=cost.batch, receptive_field=rf.describe(),
        receptive_size=min(rf.size.at(n), n),
        dependency_path=reach.dependency_path,
        serial_steps=int(reach.serial_steps.at(n)),
        peak=prediction.peak, flops=prediction.flops).judged(goals)


def _number(value: float | None) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return int(value) if float(value).is_integer() else value


def _text(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else str(_number(value))
