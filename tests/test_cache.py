"""The answer cache: an unchanged model is answered without importing torch, and any
change that could change the answer (the model file, a module it imports from the
project, the settings) analyzes again. Corrupt or unwritable caches never fail a run.

"Answered from the cache" is proven, not timed: the second run has a ``torch`` on its
path that raises on import, so only a run that never imports torch can succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MODEL = textwrap.dedent("""\
    import torch
    from torch import nn

    from helper import WIDTH


    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.conv = nn.Conv1d(8, 8, kernel_size=WIDTH, padding=WIDTH // 2)

        def forward(self, tokens):
            return self.conv(self.embed(tokens).transpose(1, 2))


    def build_model():
        return Model()


    def example_input(seq_len, batch=1):
        return torch.zeros(batch, seq_len, dtype=torch.long)
    """)
ARGS = ["--seq-len", "256", "--span", "64", "--no-dynamic", "--format", "json"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "model.py").write_text(MODEL)
    (tmp_path / "proj" / "helper.py").write_text("WIDTH = 5\n")
    poison = tmp_path / "poison" / "torch"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('torch was imported')\n")
    return tmp_path


def _run(project: Path, *extra: str, poisoned: bool = False,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "ARCHLINT_NO_CACHE"}
    environment["XDG_CACHE_HOME"] = str(project / "cache")
    environment["PYTHONPATH"] = os.pathsep.join(
        ([str(project / "poison")] if poisoned else []) + [str(project / "proj")]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "archlint", "check", "model.py", *ARGS,
                           *extra], cwd=project / "proj", env=environment,
                          capture_output=True, text=True, timeout=600)


def _receptive_field(result: subprocess.CompletedProcess) -> int:
    assert result.returncode in (0, 1), result.stderr
    (report,) = json.loads(result.stdout)["reports"]
    return report["reach"]["receptive_field"]["at_target"]


def _entries(project: Path) -> list[Path]:
    return sorted((project / "cache" / "archlint").glob("*.json"))


def test_an_unchanged_model_is_answered_from_the_cache_without_torch(project: Path) -> None:
    first = _run(project)
    assert first.returncode in (0, 1), first.stderr
    assert len(_entries(project)) == 1
    again = _run(project, poisoned=True)
    assert again.returncode == first.returncode, again.stderr
    assert again.stdout == first.stdout                # same bytes
    # --no-cache analyzes again: with the poisoned torch it cannot succeed
    fresh = _run(project, "--no-cache", poisoned=True)
    assert fresh.returncode == 2
    assert "torch was imported" in fresh.stderr


def test_editing_the_model_or_a_module_it_imports_analyzes_again(project: Path) -> None:
    first = _run(project)
    assert _receptive_field(first) == 5                 # WIDTH = 5 in helper.py
    (project / "proj" / "helper.py").write_text("WIDTH = 9\n")
    poisoned = _run(project, poisoned=True)
    assert poisoned.returncode == 2, "a changed import must not be answered from the cache"
    changed = _run(project)
    expected = _run(project, "--no-cache")
    assert changed.stdout == expected.stdout != first.stdout
    assert _receptive_field(changed) == 9
    (project / "proj" / "model.py").write_text(MODEL + "\n# an edit\n")
    assert _run(project, poisoned=True).returncode == 2


def test_other_settings_are_another_entry(project: Path) -> None:
    _run(project)
    other = _run(project, "--seq-len", "512", poisoned=True)
    assert other.returncode == 2                       # not answered by the 256 entry
    assert len(_entries(project)) == 1


def test_a_corrupt_entry_is_ignored_and_rewritten(project: Path) -> None:
    first = _run(project)
    (entry,) = _entries(project)
    entry.write_text("{not json")
    again = _run(project)
    assert again.returncode == first.returncode and again.stdout == first.stdout
    assert _run(project, poisoned=True).stdout == first.stdout      # rewritten, valid again


def test_an_unwritable_cache_never_fails_the_run(project: Path) -> None:
    (project / "cache").write_text("a file where the cache directory should be")
    result = _run(project)
    assert result.returncode in (0, 1), result.stderr
    assert result.stdout.lstrip().startswith("{")


def test_config_can_switch_the_cache_off(project: Path) -> None:
    (project / "proj" / "pyproject.toml").write_text("[tool.archlint]\ncache = false\n")
    _run(project)
    assert _entries(project) == []
    (project / "proj" / "pyproject.toml").write_text("[tool.archlint]\ncache = 3\n")
    bad = _run(project)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "cache = 3" in bad.stderr
