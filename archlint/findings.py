"""A finding: one lint result with a rule code, numbers, a location and a fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archlint.graph import SourceLocation
from archlint.settings import SEVERITIES


@dataclass(frozen=True)
class Finding:
    """``AL101 positional table has 512 rows < seq_len 4096`` at ``model.py:12``."""

    code: str
    rule: str                       # kebab-case rule name, e.g. "positional-table-too-short"
    severity: str                   # "info" | "warning" | "error"
    message: str
    fix: str
    location: SourceLocation | None = None
    layer: str | None = None        # module path of the flagged layer
    #: other lines behind the finding: the library line that built a layer when
    #: ``location`` is the user's line that built the model
    related: tuple[SourceLocation, ...] = ()
    #: the numbers that set the flagged limit (a table size): the user's config argument
    #: with that value is where a finding inside a library points (see load.source)
    limits: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def sort_key(self) -> tuple:
        loc = self.location or SourceLocation("", 0)
        return (loc.file, loc.line, self.code, self.message)

    def at_least(self, severity: str) -> bool:
        return SEVERITIES.index(self.severity) >= SEVERITIES.index(severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "location": None if self.location is None else
            {"file": self.location.file, "line": self.location.line},
            "layer": self.layer,
            "related": [{"file": loc.file, "line": loc.line} for loc in self.related],
        }
