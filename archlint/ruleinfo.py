"""What every rule is called, read from the rule files without importing them.

``archlint rules``, ``archlint explain CODE`` and the validation of ``select``,
``ignore``, ``[tool.archlint.rules.<CODE>]`` and ``# archlint: noqa: CODE`` need each
rule's code, name, severity, options and docstring, but not the rule itself. Importing
the rules pulls in the analyses and with them torch (seconds); reading the class
attributes from the source files with :mod:`ast` takes milliseconds, so a typo is
refused before torch is imported. A rule states its attributes as literals in its class
body (the convention of :mod:`archlint.rules`); ``tests/test_ruleinfo.py`` checks that
this reader and the imported classes agree.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

RULES_DIR = Path(__file__).resolve().parent / "rules"
#: defaults of :class:`archlint.rules.Rule` for a rule that does not set them
_BASE = {"severity": "warning", "options": {}}


@dataclass(frozen=True)
class RuleInfo:
    """A rule as its file declares it."""

    code: str
    name: str
    severity: str
    doc: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else ""


@lru_cache(maxsize=1)
def rule_infos() -> tuple[RuleInfo, ...]:
    """Every rule of the package, sorted by code."""
    found: dict[str, RuleInfo] = {}
    for path in sorted(RULES_DIR.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for info in _declared(path):
            found[info.code] = info
    return tuple(found[code] for code in sorted(found))


def info_by_code(code: str) -> RuleInfo | None:
    wanted = str(code).strip().upper()
    for info in rule_infos():
        if info.code == wanted:
            return info
    return None


def unknown_codes(codes: tuple[str, ...] | list[str]) -> list[str]:
    """The entries of a select/ignore list that are neither a rule code nor a prefix of one
    (ruff semantics: ``AL1`` selects every AL1xx rule, ``AL`` all of them)."""
    known = [info.code for info in rule_infos()]
    return [code for code in codes
            if not any(rule.startswith(str(code).upper()) for rule in known)]


def _declared(path: Path) -> list[RuleInfo]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    infos = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        values = dict(_BASE)
        for statement in node.body:
            target, value = _assignment(statement)
            if target in ("code", "name", "severity", "options"):
                values[target] = ast.literal_eval(value)
        if "code" in values and "name" in values:
            infos.append(RuleInfo(code=values["code"], name=values["name"],
                                  severity=values["severity"],
                                  doc=inspect.cleandoc(ast.get_docstring(node) or ""),
                                  options=dict(values["options"])))
    return infos


def _assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)):
        return statement.targets[0].id, statement.value
    if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
            and statement.value is not None):
        return statement.target.id, statement.value
    return None, None
