"""The result of analyzing one model: layers, sequence-axis metrics, costs, findings.

``Report.to_dict()`` is the ``--format json`` document. Its layout is versioned by
:data:`SCHEMA_VERSION` and documented in ``docs/json-schema.md``; bump the version on any
change that removes or renames a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from archlint.findings import Finding
from archlint.graph import Layer, ModelGraph
from archlint.settings import Settings

SCHEMA_VERSION = "1.0"


class Section(Protocol):
    """An analysis result attached to a report (reach, cost, profile)."""

    def to_dict(self) -> dict[str, Any]: ...

    def render_text(self) -> str: ...


@dataclass
class ModelInfo:
    """What was analyzed: a name for humans, where it came from, how big it is."""

    name: str                   # "model.py:GPT" or "pkg.mod:attr" or the class name
    file: str | None            # the model's source file, as given by the user
    class_name: str
    parameters: int
    input: str                  # InputSpec.description

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    """Everything archlint learned about one model under one set of settings."""

    model: ModelInfo
    settings: Settings
    graph: ModelGraph
    reach: Section | None = None
    cost: Section | None = None
    profile: Section | None = None
    parallel: Section | None = None       # per-device figures under --parallel
    baseline: Section | None = None           # the diff against --baseline (archlint.baseline)
    findings: list[Finding] = field(default_factory=list)

    @property
    def layers(self) -> list[Layer]:
        return self.graph.layers

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model.to_dict(),
            "settings": self.settings.to_dict(),
            "trace": {
                "frontend": self.graph.frontend,
                "notes": list(self.graph.frontend_notes),
                "trace_len": self.graph.trace_len,
            },
            "layers": [layer.to_dict() for layer in self.layers],
            "unattributed": list(self.graph.unattributed),
            "reach": None if self.reach is None else self.reach.to_dict(),
            "cost": None if self.cost is None else self.cost.to_dict(),
            "profile": None if self.profile is None else self.profile.to_dict(),
            "parallel": None if self.parallel is None else self.parallel.to_dict(),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "findings": [finding.to_dict() for finding in self.findings],
        }
