"""The command line end to end: exit codes, one-line errors, deterministic output."""

from __future__ import annotations

import inspect
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


def assert_one_line_error(args: list[str], expected: str) -> None:
    """Exit 2, nothing on stdout, and stderr exactly ``archlint: error: <expected>``
    on one line (no traceback, no usage block)."""
    separate = "mix_stderr" in inspect.signature(CliRunner.__init__).parameters  # click<8.2
    result = (CliRunner(mix_stderr=False) if separate else CliRunner()).invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"archlint: error: {expected}\n"


@pytest.mark.parametrize("args,message", [
    (["check", "missing.py"], "missing.py: no such file; pass a model file such as model.py"),
    (["check", "fixtures/transformer_model.py", "--seq-len", "0"],
     "sequence length '0' must be positive"),
    (["check", "fixtures/transformer_model.py", "--seq-len", "lots"],
     "sequence length 'lots' is not a length: use an integer or a suffix k/M (e.g. 4096, "
     "8k, 128k, 1M)"),
    (["check", "fixtures/transformer_model.py", "--seq-len", "2000000000000000"],
     "sequence length '2000000000000000' exceeds 1099511627776 (2^40): tensor sizes at "
     "that length overflow int64; use a smaller --seq-len"),
    (["check", "fixtures/transformer_model.py", "--memory", "16GX"],
     "memory size '16GX' is not a size: use a number with B, MB, GB, TB, MiB, GiB or TiB "
     "(e.g. 16GB, 80GiB, 512MB), or a device name"),
    (["check", "fixtures/transformer_model.py", "--mode", "fly"],
     "setting mode: 'fly' is not one of train, infer, decode"),
])
def test_usage_errors_exit_2_with_one_line(args, message):
    assert_one_line_error(args, message)


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


def test_unknown_rule_explain_is_exit_2_with_one_line():
    assert_one_line_error(["explain", "AL999"], "unknown rule 'AL999'; see `archlint rules`")


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
    assert_one_line_error(["profile", "fixtures/gpt_sdpa.py", "--mode", "decode"],
                          "archlint profile measures train and infer steps: use --mode "
                          "train or --mode infer")
