"""Issue 5 target: `archlint check` over a repository with 10 model files.

Must hold: one process checking 10 files is much cheaper than 10 processes (torch and
archlint import once, torch.export warms up once); byte-identical model files are
analyzed once (the session reuses the report, with its own paths); the pre-commit hook
costs no more than the check itself plus pre-commit's start-up.

Prints, for a temporary git repository holding the model files:

1. ten distinct fixture models: ten `archlint check FILE` processes vs one
   `archlint check` over all ten (from `models` in [tool.archlint]);
2. ten byte-identical copies of one model: one process, analyzed vs reused;
3. `pre-commit run --all-files` with the `archlint` hook vs the bare `archlint check`.

    python benchmarks/bench_many_models.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["transformer_model.py", "gpt_sdpa.py", "lstm_model.py", "cnn_stack_k3.py",
          "dilated_cnn.py", "tcn_causal.py", "conv_transformer.py", "sliding_window.py",
          "bidirectional_gru.py", "ssm_conv.py"]
REPEATS = 2
ARCHLINT = [sys.executable, "-m", "archlint"]


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    process = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed:\n{process.stdout}{process.stderr}")
    return time.perf_counter() - start, process.returncode


def best(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    return min(timed(args, cwd, env)[0] for _ in range(REPEATS))


def make_repo(folder: Path, files: dict[str, str]) -> None:
    (folder / "models").mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(ROOT / "fixtures" / source, folder / "models" / name)
    # dynamic = false: the gradient probes (up to ~20 s for a recurrent model) are the same
    # per-model cost in every variant measured here and would only add noise
    (folder / "pyproject.toml").write_text(
        '[tool.archlint]\nmodels = ["models/*.py"]\nseq_len = "4k"\ndynamic = false\n')


def session_counts(folder: Path) -> tuple[int, int, float]:
    code = ("import time, glob; start = time.perf_counter(); "
            "from archlint.session import CheckSession; s = CheckSession(); "
            "s.check(s.config(None).model_targets()); "
            "print(s.analyzed, s.reused, time.perf_counter() - start)")
    out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), int(out[1]), float(out[2])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        distinct, copies = Path(tmp) / "distinct", Path(tmp) / "copies"
        make_repo(distinct, {name: name for name in MODELS})
        make_repo(copies, {f"copy_{i}.py": "gpt_sdpa.py" for i in range(len(MODELS))})

        per_file = [timed([*ARCHLINT, "check", f"models/{name}"], distinct)[0] for name in MODELS]
        together = best([*ARCHLINT, "check"], distinct)
        print(f"10 distinct models, 10 processes: {sum(per_file):6.2f} s "
              f"({min(per_file):.2f}-{max(per_file):.2f} s each)")
        print(f"10 distinct models, one process:  {together:6.2f} s "
              f"({sum(per_file) / together:.1f}x faster)")

        analyzed, reused, seconds = session_counts(copies)
        one = best([*ARCHLINT, "check", "models/copy_0.py"], copies)
        copies_time = best([*ARCHLINT, "check"], copies)
        print(f"10 identical copies, one process: {copies_time:6.2f} s, analyzed {analyzed}, "
              f"reused {reused} (one copy alone: {one:.2f} s; session {seconds:.2f} s)")

        subprocess.run(["git", "init", "-q"], cwd=distinct, check=True)
        hooks = Path(tmp) / "hooks"
        hooks.mkdir()
        shutil.copy(ROOT / ".pre-commit-hooks.yaml", hooks)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run(["git", "init", "-q"], cwd=hooks, check=True)
        subprocess.run(["git", "add", "."], cwd=hooks, check=True)
        subprocess.run([*git, "commit", "-qm", "hooks"], cwd=hooks, check=True)
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=hooks, check=True,
                             capture_output=True, text=True).stdout.strip()
        (distinct / ".pre-commit-config.yaml").write_text(
            f"repos:\n- repo: {hooks}\n  rev: {rev}\n  hooks:\n  - id: archlint\n")
        subprocess.run(["git", "add", "."], cwd=distinct, check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["PRE_COMMIT_HOME"] = str(Path(tmp) / "pre-commit-home")
        hook_args = [sys.executable, "-m", "pre_commit", "run", "--all-files"]
        first, _ = timed(hook_args, distinct, env)               # clones the hook repo
        hook = best(hook_args, distinct, env)
        bare = best(["archlint", "check"], distinct, env)
        print(f"pre-commit hook over the 10 models: {hook:6.2f} s vs archlint check "
              f"{bare:.2f} s: +{hook - bare:.2f} s ({(hook / bare - 1) * 100:.0f}%); "
              f"first run with hook install {first:.2f} s")


if __name__ == "__main__":
    main()
