"""Shared helpers: the repository root, fixture paths, and cached analyses."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--snapshot-update", action="store_true", dest="snapshot_update",
                     help="rewrite tests/snapshots/ (rule findings, golden text reports) "
                          "instead of failing on a difference")


@pytest.fixture(autouse=True)
def _run_from_root(monkeypatch):
    """Locations are reported relative to the working directory: use the repo root."""
    monkeypatch.chdir(ROOT)


def fixture_files() -> list[str]:
    return sorted(f"fixtures/{p.name}" for p in FIXTURES.glob("*.py") if p.name != "__init__.py")


@cache
def traced(path: str):
    """The classified graph of a fixture, traced once per test session."""
    from archlint.classify import classify
    from archlint.load import load_target
    from archlint.trace import trace_model

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return classify(trace_model(load_target(path)))
    finally:
        os.chdir(cwd)


# Every test analyzes afresh: the answer cache (archlint/cache.py) would otherwise answer
# a second identical invocation, in this process or in a subprocess. tests/test_cache.py
# turns it on for itself.
os.environ.setdefault("ARCHLINT_NO_CACHE", "1")
