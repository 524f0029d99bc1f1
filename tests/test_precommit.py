"""The real pre-commit, on a temporary git repository whose config points at this checkout.

The hook repository is this checkout at ``git rev-parse HEAD`` when its
``.pre-commit-hooks.yaml`` is committed there unchanged (CI runs on a fresh clone); while
the file has uncommitted edits it is mirrored into a one-commit repository, so the test
always exercises the hook definition in the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from project_helpers import POS_LINE, git, write_model, write_pyproject

ROOT = Path(__file__).resolve().parent.parent
HOOKS_FILE = ".pre-commit-hooks.yaml"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def hook_repository(tmp_path: Path) -> tuple[Path, str]:
    """(repository, rev) holding the working tree's hook definition."""
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--error-unmatch", HOOKS_FILE],
                             capture_output=True).returncode == 0
    unchanged = tracked and subprocess.run(
        ["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", HOOKS_FILE]).returncode == 0
    if unchanged:
        return ROOT, git(ROOT, "rev-parse", "HEAD").strip()
    mirror = tmp_path / "hooks"
    mirror.mkdir()
    shutil.copy(ROOT / HOOKS_FILE, mirror / HOOKS_FILE)
    git(mirror, "init", "-q")
    git(mirror, "add", HOOKS_FILE)
    git(mirror, "commit", "-q", "-m", "hooks")
    return mirror, git(mirror, "rev-parse", "HEAD").strip()


def pre_commit(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    # language: system -> the `archlint` of the environment running the tests
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PRE_COMMIT_HOME"] = str(home)
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "pre_commit", *args, "--color", "never"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def project(tmp_path):
    """A repository with one model over budget, a non-model script and a hook config."""
    repo, rev = hook_repository(tmp_path)
    folder = tmp_path / "project"
    folder.mkdir()
    git(folder, "init", "-q")
    write_model(folder / "models" / "tiny.py", rows=512)
    # a Python file that is not a model: loading it as one would exit 2
    (folder / "scripts").mkdir()
    (folder / "scripts" / "train.py").write_text("raise SystemExit('not a model')\n")
    write_pyproject(folder, """
        [tool.archlint]
        models = ["models/*.py"]
        seq_len = "4k"
        """)
    (folder / ".pre-commit-config.yaml").write_text(
        f"repos:\n-   repo: {repo}\n    rev: {rev}\n    hooks:\n    -   id: archlint\n")
    git(folder, "add", ".")
    return folder, repo


def test_hook_fails_over_budget_and_passes_once_fixed(project, tmp_path):
    folder, _ = project
    home = tmp_path / "pre-commit-home"
    failed = pre_commit(folder, home, "run", "--all-files")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "archlint" in failed.stdout and "Failed" in failed.stdout
    assert f"models/tiny.py:{POS_LINE}: AL106 [error] positional table pos has 512 rows " \
           "< seq_len 4096" in failed.stdout
    assert "scripts/train.py" not in failed.stdout            # configured models only

    write_model(folder / "models" / "tiny.py", rows=4096)
    git(folder, "add", ".")
    passed = pre_commit(folder, home, "run", "--all-files")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout


def test_hook_runs_only_when_python_files_change(project, tmp_path):
    folder, _ = project
    home = tmp_path / "pre-commit-home"
    git(folder, "commit", "-q", "--no-verify", "-m", "models")
    (folder / "NOTES.md").write_text("notes\n")
    git(folder, "add", "NOTES.md")
    skipped = pre_commit(folder, home, "run")                  # only NOTES.md is staged
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "Skipped" in skipped.stdout
    (folder / "scripts" / "train.py").write_text("raise SystemExit('still not a model')\n")
    git(folder, "add", "scripts/train.py")                     # any Python change: re-check
    rerun = pre_commit(folder, home, "run")
    assert rerun.returncode == 1 and "AL106" in rerun.stdout


def test_try_repo_on_this_checkout(project, tmp_path):
    folder, repo = project
    result = pre_commit(folder, tmp_path / "home", "try-repo", str(repo), "archlint",
                        "--all-files")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"models/tiny.py:{POS_LINE}: AL106" in result.stdout
