"""Rules: one file per rule, discovered from this package.

A rule is a :class:`Rule` subclass whose docstring is its documentation, with the
sections *What it does*, *Why is this bad?*, *Example* and *Fix*. ``archlint rules``,
``archlint explain CODE`` and the generated ``rules/`` catalog all read that docstring.

Each rule names fixture models that must and must not trigger it (``flagged`` /
``clean``: ``(fixture path, settings overrides)``, Fixit's INVALID / VALID), run under
``case_settings`` first so that they stay cheap. ``tests/test_rule_cases.py`` runs every
rule's cases, fails a rule without both kinds, and pins each flagged finding's message
and fix in ``tests/snapshots/rules/<CODE>.txt`` (``pytest --snapshot-update`` rewrites
them). A new rule is one file here: the class, its docstring, its cases.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from archlint.findings import Finding
from archlint.graph import Layer, SourceLocation

if TYPE_CHECKING:
    from archlint.report import Report
    from archlint.settings import Settings


class Rule(ABC):
    """Base class. Subclasses set the class attributes and implement :meth:`check`."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[str] = "warning"
    #: per-rule options with defaults, overridable in ``[tool.archlint.rules.<CODE>]``
    options: ClassVar[dict[str, Any]] = {}
    #: fixtures that must produce this rule's finding: (path, settings overrides)
    flagged: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    #: fixtures that must not
    clean: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    #: settings every case runs under before its own overrides: no gradient probes and an
    #: inference step keep the generic test fast; a rule whose cases need the probe or a
    #: training step says so here or in the case
    case_settings: ClassVar[dict[str, Any]] = {"dynamic": False, "mode": "infer"}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def check(self, report: Report) -> Iterable[Finding]:
        """The findings of this rule on one analyzed model."""

    def option(self, key: str) -> Any:
        return self.settings.rule_option(self.code, key, self.options[key])

    def finding(self, message: str, fix: str, layer: Layer | None = None,
                location: SourceLocation | None = None,
                limits: tuple[int, ...] = ()) -> Finding:
        """A finding of this rule, located at ``layer``'s source line when given;
        ``limits`` are the numbers (a table size) a config argument may have set."""
        return Finding(
            code=self.code,
            rule=self.name,
            severity=self.settings.rule_option(self.code, "severity", self.severity),
            message=message,
            fix=fix,
            location=location or (layer.location if layer else None),
            layer=layer.name if layer else None,
            limits=limits,
        )

    @classmethod
    def summary(cls) -> str:
        return documentation(cls).splitlines()[0]


def documentation(rule: type[Rule]) -> str:
    return inspect.cleandoc(rule.__doc__ or "")


@lru_cache(maxsize=1)
def all_rules() -> tuple[type[Rule], ...]:
    """Every rule in this package, sorted by code. Duplicate codes are a bug."""
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Rule) and obj is not Rule and obj.__module__ == module.__name__:
                if obj.code in found:
                    raise RuntimeError(f"rule code {obj.code} defined twice")
                found[obj.code] = obj
    return tuple(found[code] for code in sorted(found))


def rule_by_code(code: str) -> type[Rule] | None:
    for rule in all_rules():
        if rule.code == code.upper():
            return rule
    return None


def enabled_rules(settings: Settings) -> Iterator[type[Rule]]:
    """Rules selected by ``select``/``ignore`` prefixes (ruff semantics: longest wins)."""
    for rule in all_rules():
        selected = _longest_prefix(rule.code, settings.select or ("AL",))
        ignored = _longest_prefix(rule.code, settings.ignore)
        if selected > ignored:
            yield rule


def _longest_prefix(code: str, prefixes: Iterable[str]) -> int:
    return max((len(p) for p in prefixes if code.startswith(p.upper())), default=0)


def run_rules(report: Report, settings: Settings,
              codes: Iterable[str] | None = None) -> list[Finding]:
    """All findings of the enabled rules (only ``codes`` when given), in a deterministic
    order; one inside an installed package is moved to the user's line that built the
    model."""
    from archlint.load.source import user_location

    findings: list[Finding] = []
    wanted = None if codes is None else set(codes)
    for rule in enabled_rules(settings):
        if wanted is None or rule.code in wanted:
            findings.extend(user_location(f, report.graph) for f in rule(settings).check(report))
    return sorted(findings, key=Finding.sort_key)
