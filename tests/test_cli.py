"""The command line end to end: exit codes, one-line errors, deterministic output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from archlint.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_check_reports_positional_table_at_its_line():
    result = run("check", "fixtures/transformer_model.py", "--seq-len", "4096")
    assert result.exit_code == 1
    assert ("fixtures/transformer_model.py:23: AL106 [error] positional table pos has "
            "512 rows < seq_len 4096") in result.output
    assert "fix: grow the table to 4096 rows" in result.output


def test_clean_model_exits_zero():
    result = run("check", "fixtures/transformer_model.py", "--seq-len", "512",
                 "--select", "AL106")
    assert result.exit_code == 0, result.output
    assert "no findings" in result.output


def test_json_is_deterministic_and_versioned():
    first = run("check", "fixtures/transformer_model.py", "--seq-len", "8k",
                "--format", "json", "--select", "AL106", "--no-dynamic")
    second = run("check", "fixtures/transformer_model.py", "--seq-len", "8k",
                 "--format", "json", "--select", "AL106", "--no-dynamic")
    assert first.output == second.output
    document = json.loads(first.output)
    assert document["schema_version"] == "1.0"
    report = document["reports"][0]
    assert report["settings"]["seq_len"] == [8192]
    assert report["trace"]["frontend"] == "torch.export"
    kinds = {layer["name"]: layer["kind"] for layer in report["layers"]}
    assert kinds["pos"] == "positional" and kinds["embed"] == "embedding"
    assert report["findings"][0]["location"] == {"file": "fixtures/transformer_model.py",
                                                 "line": 23}


@pytest.mark.parametrize("args,message", [
    (["check", "missing.py"], "missing.py: no such file"),
    (["check", "fixtures/transformer_model.py", "--seq-len", "0"], "must be positive"),
    (["check", "fixtures/transformer_model.py", "--seq-len", "lots"], "not a length"),
    (["check", "fixtures/transformer_model.py", "--seq-len", "2000000000000000"],
     "overflow int64"),
    (["check", "fixtures/transformer_model.py", "--memory", "16GX"], "not a size"),
    (["check", "fixtures/transformer_model.py", "--mode", "fly"], "setting mode"),
])
def test_usage_errors_exit_2_with_one_line(args, message):
    result = CliRunner(mix_stderr=False).invoke(main, args) if _has_mix_stderr() else \
        CliRunner().invoke(main, args)
    assert result.exit_code == 2
    text = result.stderr if _has_mix_stderr() else result.output
    assert message in text
    assert text.count("\n") == 1
    assert "Traceback" not in text


def _has_mix_stderr() -> bool:
    import inspect
    return "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


def test_debug_shows_the_traceback():
    process = subprocess.run(
        [sys.executable, "-m", "archlint", "check", "missing.py", "--debug"],
        capture_output=True, text=True)
    assert process.returncode != 0
    assert "Traceback" in process.stderr


def test_console_entry_point_and_module_agree():
    process = subprocess.run([sys.executable, "-m", "archlint", "explain", "AL106"],
                             capture_output=True, text=True)
    assert process.returncode == 0
    assert "## What it does" in process.stdout
    assert "AL106 positional-table-too-short (error)" in process.stdout


def test_unknown_rule_explain_is_exit_2():
    result = run("explain", "AL999")
    assert result.exit_code == 2


def test_profile_command_measures_beside_the_prediction(tmp_path):
    """`archlint profile`: a measured row whose error is within the 5% bar, a trace file,
    and exit 1 when a length fails for real (256-row positional table at n=512)."""
    result = run("profile", "fixtures/gpt_sdpa.py", "--seq-len", "64,512",
                 "--out", str(tmp_path), "--format", "json")
    assert result.exit_code == 1
    document = json.loads(result.stdout if hasattr(result, "stdout") else result.output)
    rows = {row["seq_len"]: row for row in document["lengths"]}
    assert rows[64]["status"] == "measured"
    predicted, measured = rows[64]["predicted_peak_bytes"], rows[64]["measured_peak_bytes"]
    assert abs(predicted - measured) <= 0.05 * measured
    assert rows[512]["status"].startswith("failed: IndexError")
    assert list(tmp_path.rglob("*.pt.trace.json"))


def test_profile_refuses_decode_mode_with_one_line():
    result = run("profile", "fixtures/gpt_sdpa.py", "--mode", "decode")
    assert result.exit_code == 2
