"""Baselines: write, compare with itself, and flag what a change moved (AL501-AL503)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import archlint
from archlint.cli import main
from archlint.units import format_bytes, format_count

pytest_plugins = ["pytester"]

#: a small token model: a positional table of ``rows`` rows (AL106 beyond), width
#: ``width``, one conv of kernel ``kernel`` (the receptive field R = kernel) and an MLP
MODEL = '''\
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, {width})
        self.pos = nn.Embedding({rows}, {width})
        self.conv = nn.Conv1d({width}, {width}, {kernel}, padding={kernel} // 2)
        self.mlp = nn.Sequential(nn.Linear({width}, 4 * {width}), nn.GELU(),
                                 nn.Linear(4 * {width}, {width}))
        self.head = nn.Linear({width}, 50)

    def forward(self, ids):
        positions = torch.arange(ids.size(1), device=ids.device)
        x = self.embed(ids) + self.pos(positions)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.head(x + self.mlp(x))
'''
POS_LINE = 9


def write(folder: Path, width: int = 32, rows: int = 1024, kernel: int = 5) -> str:
    path = folder / "small.py"
    path.write_text(MODEL.format(width=width, rows=rows, kernel=kernel))
    # the edit may keep the size and the second of the last one: drop the stale bytecode
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    return str(path)


def run(*args: str, seq_len: str = "512"):
    return CliRunner().invoke(main, ["check", *args, "--seq-len", seq_len, "--no-dynamic",
                                     "--isolated"], catch_exceptions=False)


@pytest.fixture
def stored(tmp_path):
    """(model file, baseline file) written for the model as it is."""
    model = write(tmp_path)
    path = tmp_path / "baseline.json"
    first = run(model, "--write-baseline", str(path), seq_len="256,512")
    assert first.exit_code == 0, first.output
    return model, path


def test_round_trip_nothing_moved(stored, tmp_path):
    model, path = stored
    document = json.loads(path.read_text())
    assert list(document["models"]) == [f"{model}:Small"]
    entry = document["models"][f"{model}:Small"]["512"]
    report = archlint.analyze(model, seq_len="256,512", dynamic=False)
    assert entry["lengths"]["512"] == {"peak_bytes": report.cost.at(512).peak,
                                       "flops": report.cost.at(512).flops}
    assert entry["lengths"]["256"]["peak_bytes"] == report.cost.at(256).peak
    assert entry["receptive_field"] == "5"                      # the kernel of the one conv
    assert entry["serial_steps"] == "1"                         # one conv on the path
    assert entry["step"] == {"mode": "train", "dtype": "float32", "batch": 1,
                             "optimizer": "adam"}
    again = tmp_path / "again.json"
    run(model, "--write-baseline", str(again), seq_len="256,512")
    assert again.read_bytes() == path.read_bytes()              # deterministic bytes
    result = run(model, "--baseline", str(path), "--format", "json",
                 seq_len="256,512")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)["reports"][0]["baseline"]
    assert diff["found"] and diff["regressions"] == [] and diff["improvements"] == []
    text = run(model, "--baseline", str(path), seq_len="256,512")
    assert "nothing moved: peak, FLOPs, R, L, S and findings as stored" in text.output


def test_doubled_hidden_size_is_flagged(stored, tmp_path):
    model, path = stored
    before = archlint.analyze(model, seq_len="512", dynamic=False)
    write(tmp_path, width=64)
    after = archlint.analyze(model, seq_len="512", dynamic=False)
    result = run(model, "--baseline", str(path))
    assert result.exit_code == 1, result.output
    peak = before.cost.target.peak, after.cost.target.peak
    flops = before.cost.target.flops, after.cost.target.flops
    # every weight matrix is width x width (or width x 4 width): 4x the MACs per position
    assert 3.5 < flops[1] / flops[0] <= 4
    assert (f"AL502 [error] peak memory at n=512: {format_bytes(peak[0])} -> "
            f"{format_bytes(peak[1])} ({peak[1] / peak[0] - 1:+.1%}, tolerance 2%)"
            in result.output)
    assert (f"AL502 [error] FLOPs at n=512: {format_count(flops[0])} -> "
            f"{format_count(flops[1])} ({flops[1] / flops[0] - 1:+.1%}, tolerance 2%)"
            in result.output)
    assert "AL503" not in result.output                          # R and S did not move
    github = run(model, "--baseline", str(path), "--format", "github")
    lines = [line for line in github.output.splitlines() if "AL502" in line]
    assert len(lines) == 2 and all(line.startswith("::error file=") for line in lines)
    assert "title=AL502 baseline-cost-regression::peak memory at n=512" in github.output


def test_tolerance_setting(stored, tmp_path):
    model, path = stored
    write(tmp_path, width=34)                                   # a few percent more
    before = json.loads(path.read_text())["models"][f"{model}:Small"]["512"]["lengths"]["512"]
    after = archlint.analyze(model, seq_len="512", dynamic=False).cost.target
    rise = after.peak / before["peak_bytes"] - 1
    assert 0.02 < rise < 0.5
    assert run(model, "--baseline", str(path)).exit_code == 1
    loose = run(model, "--baseline", str(path), "--baseline-tolerance", f"{rise + 0.3:.2f}")
    assert loose.exit_code == 0, loose.output


def test_new_finding_and_reach_change(stored, tmp_path):
    model, path = stored
    write(tmp_path, rows=256, kernel=9)                          # table too short; R 5 -> 9
    result = run(model, "--baseline", str(path))
    assert result.exit_code == 1
    assert (f"{model}:{POS_LINE}: AL501 [error] new AL106 positional-table-too-short: "
            "positional table pos has 256 rows < seq_len 512" in result.output)
    assert "AL503 [error] receptive field R: 5 -> 9" in result.output
    # an AL106 accepted by a noqa comment is not new
    source = Path(model).read_text().replace(
        "self.pos = nn.Embedding(256, 32)",
        "self.pos = nn.Embedding(256, 32)  # archlint: noqa: AL106")
    Path(model).write_text(source)
    quiet = run(model, "--baseline", str(path))
    assert "AL501" not in quiet.output and "AL503" in quiet.output


def test_improvements_are_listed_and_pass(stored, tmp_path):
    model, path = stored
    write(tmp_path, width=16)
    result = run(model, "--baseline", str(path))
    assert result.exit_code == 0, result.output
    assert "improved: peak memory at n=512:" in result.output
    assert "improved: FLOPs at n=512:" in result.output
    github = run(model, "--baseline", str(path), "--format", "github")
    notices = [line for line in github.output.splitlines() if line.startswith("::notice")]
    assert len(notices) == 2                                     # peak and FLOPs at n=512
    assert "title=archlint baseline%3A improved::peak memory at n=512" in github.output


def test_accepted_findings_do_not_fail_but_new_models_do(tmp_path):
    model = write(tmp_path, rows=256)                            # AL106 from the start
    path = tmp_path / "baseline.json"
    assert run(model, "--write-baseline", str(path)).exit_code == 1
    accepted = run(model, "--baseline", str(path))
    assert accepted.exit_code == 0 and "AL106" in accepted.output
    other = tmp_path / "other.py"
    other.write_text(Path(model).read_text())
    unknown = run(str(other), "--baseline", str(path))
    assert unknown.exit_code == 1                                # not in the baseline
    assert "not in the baseline" in unknown.output


@pytest.mark.parametrize("content, message", [
    (None, "no such baseline file; write one with `archlint check --write-baseline"),
    ('{"models": ', "not a baseline file (invalid JSON at line 1)"),
    ('{"archlint_baseline": 1, "models": []}', "not an archlint baseline (version 1)"),
    ('{"archlint_baseline": 1, "models": {"m": {"512": 3}}}', "not an archlint baseline"),
])
def test_missing_or_corrupt_baseline_is_one_line(tmp_path, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["check", "fixtures/cnn_stack_k3.py", "--baseline",
                                       str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message in result.output


def test_bad_tolerance_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["check", "fixtures/cnn_stack_k3.py",
                                       "--baseline-tolerance", "-1"])
    assert result.exit_code == 2 and "baseline_tolerance" in result.output


def test_configured_baseline_for_the_hook(tmp_path, monkeypatch):
    """``archlint check`` without targets (the pre-commit hook) reads ``baseline``."""
    write(tmp_path)
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.archlint]
        models = ["small.py"]
        seq_len = [256, 512]
        dynamic = false
        baseline = "baseline.json"
        baseline_tolerance = "2%"
        """))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    written = runner.invoke(main, ["check", "--write-baseline", "baseline.json"])
    assert written.exit_code == 0, written.output
    assert list(json.loads((tmp_path / "baseline.json").read_text())["models"]) == \
        ["small.py:Small"]
    clean = runner.invoke(main, ["check"])
    assert clean.exit_code == 0, clean.output
    write(tmp_path, width=64)
    failed = runner.invoke(main, ["check"])
    assert failed.exit_code == 1 and "AL502" in failed.output


def test_pytest_archlint_baseline(pytester):
    model = write(pytester.path)
    # pytester forgets modules an inner run imported first, and the cost engine's kernel
    # handlers register once per process: run the whole pipeline here first
    assert archlint.analyze(model, seq_len=64, dynamic=False).cost.predictions
    # everything under pytester.path: the root of the node ids the entries are stored under
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.archlint({model!r}, seq_len=512, dynamic=False, max_serial_steps=8)
        def test_small():
            pass
    """)
    path = pytester.path / "tests-baseline.json"
    pytester.runpytest("--archlint-write-baseline", str(path)).assert_outcomes(passed=1)
    [key] = json.loads(path.read_text())["models"]
    assert key == f"test_pytest_archlint_baseline.py::test_small::{model}:Small"
    pytester.runpytest("--archlint-baseline", str(path)).assert_outcomes(passed=1)
    write(pytester.path, width=64)
    failed = pytester.runpytest("--archlint-baseline", str(path))
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*2 regression(s) of *small.py:Small against the baseline*",
                                 "*AL502 baseline-cost-regression: FLOPs at n=512*",
                                 "*AL502 baseline-cost-regression: peak memory at n=512*"])
    missing = pytester.runpytest("--archlint-baseline", str(pytester.path / "nope.json"))
    assert missing.ret != 0
    missing.stderr.fnmatch_lines(["*--archlint-baseline: *nope.json: no such baseline file*"])
