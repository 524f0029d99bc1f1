"""One suggested change: what to do, where in the user's file, and what it then costs.

``method`` says how the numbers were obtained: :data:`RERUN` (the cost model ran again
on a copy of the module with the change applied, or with the changed setting) or
:data:`ESTIMATED` (the existing run's per-layer split: the bytes and FLOPs the changed
layers hold at the peak, rescaled by the change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archlint.advise.position import Standing
from archlint.graph import SourceLocation

RERUN = "re-run"
ESTIMATED = "estimated from per-layer split"


@dataclass(frozen=True)
class Site:
    """A layer (or folded run of layers, ``blocks.0-11.attn``) and the line that built it."""

    name: str
    location: SourceLocation | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name,
                "location": None if self.location is None else str(self.location)}


@dataclass(frozen=True)
class Suggestion:
    """A concrete change and the model's standing after it."""

    key: str                            # fused-attention | bf16 | checkpoint | window | ...
    title: str
    change: str                         # the edit, with its numbers
    where: tuple[Site, ...]
    method: str                         # RERUN | ESTIMATED
    method_detail: str                  # what was re-run / which part of the split
    standing: Standing | None           # None: the change could not be evaluated
    details: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str | None = None            # why it could not be evaluated

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "title": self.title, "change": self.change,
            "where": [site.to_dict() for site in self.where],
            "method": self.method, "method_detail": self.method_detail,
            "after": None if self.standing is None else self.standing.to_dict(),
            "details": {k: _plain(v) for k, v in self.details.items()},
            "notes": list(self.notes), "error": self.error,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return value
