"""Snapshot files (Ruff's fixture + snapshot, torchinfo's golden outputs): a text pinned
under ``tests/snapshots/``; ``pytest --snapshot-update`` rewrites it, otherwise a
difference fails with a unified diff, so a change of wording is a reviewed diff."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "tests" / "snapshots"


def normalized(text: str) -> str:
    """Paths relative to the repository (as on every machine), no trailing blanks, one
    final newline."""
    text = text.replace(str(ROOT) + "/", "").replace(ROOT.as_uri() + "/", "")
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def assert_snapshot(config: pytest.Config, relative: str, text: str) -> None:
    """``text`` equals ``tests/snapshots/<relative>``, or, with ``--snapshot-update``,
    becomes it."""
    path = SNAPSHOTS / relative
    text = normalized(text)
    if config.getoption("snapshot_update"):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no snapshot tests/snapshots/{relative}: run pytest --snapshot-update "
                    "and review the new file", pytrace=False)
    stored = path.read_text(encoding="utf-8")
    if stored != text:
        diff = "".join(difflib.unified_diff(
            stored.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"tests/snapshots/{relative} (stored)", tofile="this run"))
        pytest.fail(f"snapshot tests/snapshots/{relative} differs (pytest --snapshot-update "
                    f"rewrites it once the change is meant):\n{diff}", pytrace=False)
