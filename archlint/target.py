"""A model target as the user names it: ``model.py``, ``model.py:NAME``, ``pkg.mod:attr``.

Parsing a target checks only what can be checked without importing anything (the file
exists and is a file), so the command line refuses a wrong path before torch loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from archlint.errors import ArchlintError


@dataclass
class Target:
    """A parsed model target: where the code lives and which attribute (if named)."""

    text: str
    path: str | None        # a .py file, or None for package.module
    module_name: str | None
    attr: str | None

    @property
    def label(self) -> str:
        return self.path or self.module_name or self.text


def parse_target(text: str) -> Target:
    """Split ``model.py:NAME`` / ``pkg.mod:attr`` / ``model.py``."""
    if not isinstance(text, str) or not text.strip():
        raise ArchlintError(f"{text!r} is not a model target; use model.py, model.py:NAME "
                            "or package.module:attr")
    head, sep, attr = text.rpartition(":") if ":" in text else (text, "", "")
    if not sep:
        head, attr = text, ""
    if head.endswith(".py") or os.sep in head or os.path.exists(head):
        try:
            is_file = os.path.isfile(head)
            if is_file:
                os.stat(os.path.realpath(head, strict=True))
        except (OSError, RuntimeError) as exc:           # a symlink loop, a bad component
            raise ArchlintError(f"{head}: cannot open it ({_reason(exc)}); pass a model "
                                "file such as model.py") from None
        if not is_file and os.path.islink(head):
            raise ArchlintError(f"{head}: cannot open it (a symbolic link that does not "
                                "resolve: a loop or a missing target); pass the model file")
        if not is_file:
            raise ArchlintError(f"{head}: no such file; pass a model file such as model.py")
        if not os.access(head, os.R_OK):
            raise ArchlintError(f"{head}: not readable; fix its permissions")
        return Target(text, head, None, attr or None)
    if not head.replace(".", "").replace("_", "").isalnum():
        raise ArchlintError(
            f"{text}: not a model target; use model.py, model.py:NAME or package.module:attr")
    return Target(text, None, head, attr or None)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
