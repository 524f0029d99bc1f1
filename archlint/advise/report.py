"""The result of ``archlint advise`` for one model: position, goals, ranked changes.

``AdviceReport.to_dict()`` is the ``--format json`` document (``schema_version`` "1.0"):
``model``, ``settings``, ``goals``, ``position`` (the model as it is: R, L(span), S,
peak, FLOPs, fits / reaches / on_time), ``suggestions`` (ranked; each with ``key``,
``title``, ``change``, ``where`` (layer names and ``file:line``), ``method``
("re-run" | "estimated from per-layer split") and ``method_detail``, ``after`` (the
standing with the change), ``details``, ``notes``, ``error``), ``already`` (changes the
model has, not suggested), ``ruled_out`` (changes that cannot help, with the reason) and
``blockers`` (findings that stop the model at n).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archlint.advise.position import Goals, Standing
from archlint.advise.suggestion import Suggestion

SCHEMA_VERSION = "1.0"


@dataclass
class AdviceReport:
    model: Any                               # archlint.report.ModelInfo
    settings: Any
    goals: Goals
    position: Standing
    suggestions: list[Suggestion]
    already: list[str] = field(default_factory=list)
    ruled_out: list[str] = field(default_factory=list)
    blockers: list[Any] = field(default_factory=list)    # Finding

    def suggestion(self, key: str) -> Suggestion | None:
        return next((s for s in self.suggestions if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        goals = self.goals
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model.to_dict(),
            "settings": self.settings.to_dict(),
            "goals": {"seq_len": goals.seq_len, "span": goals.span,
                      "budget_bytes": goals.budget, "latency_ms": goals.latency_ms,
                      "max_serial_steps": goals.max_serial_steps,
                      "ms_per_step": goals.ms_per_step, "max_path": goals.max_path},
            "position": self.position.to_dict(),
            "suggestions": [s.to_dict() for s in self.suggestions],
            "already": list(self.already),
            "ruled_out": list(self.ruled_out),
            "blockers": [f.to_dict() for f in self.blockers],
        }

    def render_text(self) -> str:
        from archlint.advise.formatting import render_text

        return render_text(self)
