"""Stage 5: findings + report -> bytes. Every formatter is deterministic.

``--format text`` (humans, 80 columns, color only on a terminal), ``json`` (machines,
schema in ``docs/json-schema.md``), ``sarif`` (SARIF 2.1.0 for GitHub code scanning and
IDEs) and ``github`` (workflow-command annotations on a pull request's diff).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from archlint.report import Report


@dataclass(frozen=True)
class FormatOptions:
    """How to render: ``color`` (ANSI), ``width`` (columns) and the repository ``root``
    that SARIF and GitHub paths are relative to (None: found from the working directory)."""

    color: bool = False
    width: int = 80
    root: str | None = None

    def repository_root(self) -> Path:
        return Path(self.root).resolve() if self.root else repository_root()


def repository_root(start: str | None = None) -> Path:
    """The enclosing git work tree (a folder holding ``.git``), else the working directory."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def relative_uri(file: str, root: Path) -> str | None:
    """``file`` as a POSIX path relative to ``root``; None when it lies outside."""
    absolute = Path(os.path.abspath(file))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return None


Formatter = Callable[[list[Report], FormatOptions], str]


def _formatters() -> dict[str, Formatter]:
    from archlint.format.github import render_github
    from archlint.format.json import render_json
    from archlint.format.sarif import render_sarif
    from archlint.format.text import render_text

    return {"text": render_text, "json": render_json, "sarif": render_sarif,
            "github": render_github}


FORMATS = ("text", "json", "sarif", "github")


def render(reports: list[Report], output_format: str,
           options: FormatOptions | None = None) -> str:
    """The reports in ``output_format`` (one of :data:`FORMATS`)."""
    return _formatters()[output_format](reports, options or FormatOptions())
