"""archlint: static analysis of sequence models — reach and budget at any length.

The Python API (imported lazily, so ``import archlint`` and the pytest plugin stay cheap
until a model is analyzed):

- :func:`archlint.analyze` -> :class:`~archlint.report.Report`
- :func:`archlint.check` -> the findings, as ``archlint check`` prints them
- :func:`archlint.assert_budget` -> raises ``AssertionError`` listing each budget missed
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["analyze", "check", "assert_budget", "__version__"]

_EXPORTS = {"analyze": "archlint.api", "check": "archlint.api",
            "assert_budget": "archlint.budget"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'archlint' has no attribute {name!r}")
