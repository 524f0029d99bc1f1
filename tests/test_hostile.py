"""Hostile input: a model file, a flag or a configuration can never make archlint lie,
hang or crash. Each case asserts the exit code and the one line archlint prints.

The model files live in ``tests/hostile/`` (the first line of each says what it does).
They run through the command line in this process (``CliRunner``): archlint forks its
analysis child from here exactly as from a shell, and torch is already imported, so a
case costs a fraction of a second. What only a real process shows (stdout as a file
descriptor, no torch in the parent, Ctrl-C) runs as a subprocess, with every refusal of
a flag or configuration value batched into one interpreter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

import archlint
from archlint.cli import main
from archlint.errors import ArchlintError

HOSTILE = "tests/hostile"
STOPPED = "archlint needs it to return normally"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_error_line(result, exit_code: int = 2) -> str:
    """The error line of a refused run, after checking nothing else went wrong."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    line = result.stderr.strip().splitlines()[-1]
    assert "archlint: error: " in line, result.stderr
    return line[line.index("archlint: error: "):]   # after a prompt the model left unfinished


@pytest.mark.parametrize("name, expected", [
    ("exit_at_import", "importing tests/hostile/exit_at_import.py: the model's code called "
                       f"sys.exit(0) (tests/hostile/exit_at_import.py:4); {STOPPED}"),
    ("exit3_in_constructor", "building the model of tests/hostile/exit3_in_constructor.py: "
                             "the model's code called sys.exit(3) "
                             "(tests/hostile/exit3_in_constructor.py:10)"),
    ("exit_in_example_input", "calling example_input(seq_len, batch): the model's code "
                              "called sys.exit() (tests/hostile/exit_in_example_input.py:10)"),
    ("exit_in_forward", "running forward of tests/hostile/exit_in_forward.py:Model at n=40 "
                        "to check its input: the model's code called sys.exit(0) "
                        f"(tests/hostile/exit_in_forward.py:13); {STOPPED}"),
    ("os_exit_at_import", "importing tests/hostile/os_exit_at_import.py: the model's code "
                          "called os._exit(0) (tests/hostile/os_exit_at_import.py:4)"),
    ("os_exit_in_forward", "the model's code called os._exit(0) "
                           "(tests/hostile/os_exit_in_forward.py:13)"),
    ("argparse_at_import", "importing tests/hostile/argparse_at_import.py: the model's code "
                           "called sys.exit(2) (tests/hostile/argparse_at_import.py:6)"),
    ("keyboard_interrupt_in_forward", "the model's code raised KeyboardInterrupt "
     f"(tests/hostile/keyboard_interrupt_in_forward.py:11); {STOPPED}"),
    ("base_exception_in_constructor", "building the model of "
     "tests/hostile/base_exception_in_constructor.py: the model's code raised Stop: stop "
     "here (tests/hostile/base_exception_in_constructor.py:12)"),
    ("bad_str_exception", "importing it raised Unprintable: <Unprintable whose str() raised "
                          "RuntimeError> (tests/hostile/bad_str_exception.py:9)"),
    ("segfault_in_forward", "to check its input: the analysis process ended without a "
                            "result (killed by SIGSEGV) (at "
                            "tests/hostile/segfault_in_forward.py:13)"),
    ("reads_stdin", "importing it raised EOFError: EOF when reading a line "
                    "(tests/hostile/reads_stdin.py:2)"),
])
def test_model_code_that_exits_or_crashes_is_one_line_exit_2(name, expected):
    line = one_error_line(run("check", f"{HOSTILE}/{name}.py", "--no-dynamic"))
    assert expected in line


@pytest.mark.parametrize("name, stage, where", [
    ("sleep_at_import", "importing tests/hostile/sleep_at_import.py", "sleep_at_import.py:5"),
    ("loop_in_forward", "running forward of tests/hostile/loop_in_forward.py:Model at n=40 "
                        "to check its input", "loop_in_forward.py:1[23]"),
])
def test_a_hanging_model_stops_at_the_timeout_naming_stage_and_line(name, stage, where):
    start = time.monotonic()
    line = one_error_line(run("check", f"{HOSTILE}/{name}.py", "--timeout", "1"))
    assert time.monotonic() - start < 30
    assert re.fullmatch(re.escape(f"archlint: error: {HOSTILE}/{name}.py: {stage} did not "
                                  f"finish within 1 s (at {HOSTILE}/") + where
                        + re.escape("); the model may hang there, or raise --timeout"), line)


def test_prints_go_to_stderr_and_the_report_stays_json():
    result = run("check", f"{HOSTILE}/prints_in_forward.py", "--no-dynamic", "--format",
                 "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"][0]["model"]["name"].endswith(":Model")
    assert "hello from forward" in result.stderr and "{not json" in result.stderr


def test_a_model_replacing_stdout_does_not_lose_the_report():
    result = run("check", f"{HOSTILE}/replaces_stdout.py", "--no-dynamic")
    assert result.exit_code == 0, result.output
    assert "no findings" in result.stdout


def test_chdir_in_the_model_moves_neither_paths_nor_the_report(tmp_path):
    out = tmp_path / "report.json"
    os.chdir(tmp_path)
    try:
        result = run("check", str(ROOT / HOSTILE / "chdir_at_import.py"), "--no-dynamic",
                     "--format", "json", "-o", "report.json")
    finally:
        os.chdir(ROOT)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["reports"][0]["model"]["file"] == str(
        ROOT / HOSTILE / "chdir_at_import.py")


def test_a_noqa_with_an_unknown_code_suppresses_nothing_and_says_so():
    result = run("check", f"{HOSTILE}/typo_noqa.py", "--no-dynamic", "--seq-len", "1k")
    assert result.exit_code == 1
    assert (f"{HOSTILE}/typo_noqa.py:10: AL001 [warning] unknown rule code NOPE in "
            "`# archlint: noqa: NOPE`: it suppresses nothing") in result.stdout
    assert f"{HOSTILE}/typo_noqa.py:10: AL106 [error]" in result.stdout


def test_a_memory_budget_that_could_not_be_checked_is_an_error_finding():
    result = run("check", f"{HOSTILE}/data_dependent_forward.py", "--no-dynamic",
                 "--memory", "1MB", "--seq-len", "2k")
    assert result.exit_code == 1, result.output
    assert (f"{HOSTILE}/data_dependent_forward.py:7: AL002 [error] memory budget 1.0 MB not "
            "checked at n=2048: the step failed on fake tensors at n=2048: "
            "DataDependentOutputException") in result.stdout
    clean = run("check", f"{HOSTILE}/data_dependent_forward.py", "--no-dynamic",
                "--seq-len", "2k")
    assert clean.exit_code == 0 and "no findings" in clean.stdout
    assert "def forward" not in clean.stderr            # no FX graph dump of the failed export


def test_numpy_at_the_target_length_is_out_of_memory_in_one_line_not_a_dead_machine():
    """Under fake tensors ``x.shape[1]`` is a plain 65536: np.zeros((n, n)) asks 32 GiB."""
    line = one_error_line(run("check", f"{HOSTILE}/numpy_at_length.py", "--no-dynamic",
                              "--seq-len", "64k"))
    assert line.startswith(
        f"archlint: error: cost analysis of {HOSTILE}/numpy_at_length.py:Model: the model's "
        "code ran out of memory at n=65536 (MemoryError: Unable to allocate 32.0 GiB for an "
        "array with shape (65536, 65536) and data type float64 "
        f"({HOSTILE}/numpy_at_length.py:13)); its own numpy/Python allocations follow the "
        "length there and must fit the "), line
    assert re.search(r"must fit the [\d.]+ [kMGT]?B \((MemAvailable|RLIMIT_\w+|cgroup .+)\) "
                     r"this machine allows; allocate with torch", line), line


def test_the_analysis_child_runs_under_an_rlimit_data_of_the_machines_headroom():
    """Every forward the child runs sees RLIMIT_DATA = its data size + the headroom of the
    tightest limit (here MemAvailable, read by the test itself)."""
    available = int(Path("/proc/meminfo").read_text().split("MemAvailable:")[1].split()[0])
    result = run("check", f"{HOSTILE}/reports_data_limit.py", "--no-dynamic", "--seq-len", "1k")
    assert result.exit_code == 0, result.output
    seen = [tuple(map(int, found)) for found in
            re.findall(r"limit=(-?\d+) data=(\d+)", result.stderr)]
    assert len(seen) >= 3                                 # validation, trace, cost runs
    for limit, data in seen:
        assert data < limit <= data + available * 1024 + 512 * 2**20, (limit, data)


def test_the_api_turns_a_model_exit_into_an_archlint_error():
    from torch import nn

    class Exits(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            raise SystemExit(0)

    with pytest.raises(ArchlintError, match=r"called sys.exit\(0\) \(tests/test_hostile.py"):
        archlint.analyze(Exits(), example_input=lambda n, b: (__import__("torch").ones(b, n, 4),))


TINY = f"{HOSTILE}/_tiny.py"


@pytest.mark.parametrize("call, message", [
    (lambda: archlint.assert_budget(42, memory="1GB"),
     "42 is not a model target; use model.py, model.py:NAME or package.module:attr"),
    (lambda: archlint.assert_budget(TINY, max_flops=float("nan")),
     "budget max_flops=nan: nan is not a finite number"),
    (lambda: archlint.assert_budget(TINY, max_flops="lots"),
     "budget max_flops='lots': 'lots' is not a number of FLOPs (2e12, '1.5T')"),
    (lambda: archlint.assert_budget(TINY, max_flops=[1]),
     "budget max_flops=[1]: [1] is not a number of FLOPs (2e12, '1.5T')"),
    (lambda: archlint.assert_budget(TINY, max_serial_steps=float("inf")),
     "budget max_serial_steps=inf: inf must be a positive integer"),
    (lambda: archlint.assert_budget(TINY, memory="1GB", seq_len="abc"),
     "sequence length 'abc' is not a length"),
    (lambda: archlint.analyze(TINY, probe_len=2**40),
     "setting probe_len: 1099511627776 exceeds 4096: probes run on real tensors"),
])
def test_the_api_refuses_hostile_arguments_with_one_archlint_error(call, message):
    with pytest.raises(ArchlintError) as caught:
        call()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------ real processes


def _archlint(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlint", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, **kwargs)


def test_prints_never_reach_the_real_stdout_and_user_warnings_stay_visible():
    result = _archlint("check", f"{HOSTILE}/prints_in_forward.py", f"{HOSTILE}/user_warning.py",
                       "--no-dynamic", "--format", "sarif")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == "2.1.0"
    assert "hello from import" in result.stderr and "hello from forward" in result.stderr
    assert "UserWarning: the user's own warning" in result.stderr


def test_ctrl_c_stops_archlint_with_130():
    process = subprocess.Popen([sys.executable, "-m", "archlint", "check",
                                f"{HOSTILE}/sleep_at_import.py"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "archlint: interrupted"


REFUSALS_SCRIPT = r"""
import contextlib, io, json, sys
from archlint.cli import main
results = []
for args in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main(args, prog_name="archlint")
            code = 0
        except SystemExit as exc:
            code = exc.code
    results.append([code, err.getvalue(), out.getvalue()])
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""


def _configs(tmp_path: Path) -> dict[str, Path]:
    bodies = {
        "latin1": b"[tool.archlint]\nseq_len = \"4k\" # caf\xe9\n",
        "tool_scalar": b"[tool]\narchlint = 5\n",
        "models_int": b"[tool.archlint]\nmodels = 5\n",
        "deep": b"[tool.archlint]\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "batch_bool": b"[tool.archlint]\nbatch = true\n",
        "latency_nan": b"[tool.archlint]\nlatency = nan\n",
        "option_float": b"[tool.archlint.rules.AL102]\nthreshold = 1.5\n",
        "select_typo": b"[tool.archlint]\nselect = [\"NOPE\"]\n",
        "timeout_negative": b"[tool.archlint]\ntimeout = -1\n",
        "entries_int": b"[tool.archlint]\nmodel = 3\n",
        "probe_len_huge": b"[tool.archlint]\nprobe_len = 1099511627776\n",
    }
    paths = {}
    for name, body in bodies.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "pyproject.toml").write_bytes(body)
        paths[name] = folder / "pyproject.toml"
    return paths


def test_every_refusal_of_a_flag_or_config_value_comes_before_torch(tmp_path):
    model = "fixtures/transformer_model.py"
    configs = _configs(tmp_path)
    loop = tmp_path / "loop.py"
    loop.symlink_to(loop)
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    cases = [
        (["check", model, "--seq-len", "abc"], "sequence length 'abc' is not a length"),
        (["check", model, "--seq-len", "1.5"], "is not a whole number of positions"),
        (["check", model, "--seq-len", "inf"], "sequence length 'inf' is not a length"),
        (["check", model, "--span", "9" * 400], "has more than 30 digits"),
        (["check", model, "--memory", "9" * 400 + "GB"], "has more than 30 digits"),
        (["check", model, "--memory", "-5GB"], "memory size '-5GB' must be positive"),
        (["check", model, "--memory", "a100"], "unknown device 'a100'"),
        (["check", model, "--batch", "0"], "setting batch: 0 must be a positive integer"),
        (["check", model, "--batch", "2.5"], "setting batch: '2.5' is not a positive integer"),
        (["check", model, "--latency", "nan"], "setting latency_ms: 'nan' is not a finite"),
        (["check", model, "--select", "NOPE"], "setting select: unknown rule code 'NOPE'"),
        (["check", model, "--ignore", "AL9"], "setting ignore: unknown rule code 'AL9'"),
        (["check", model, "--timeout", "0"], "--timeout: timeout '0' must be a positive"),
        (["check", model, "--timeout", "soon"], "--timeout: timeout 'soon' is not a duration"),
        (["check", model, "-o", "fixtures"], "-o fixtures: is a directory"),
        (["check", model, "-o", str(not_a_dir / "r.json")], "does not exist"),
        (["check", model, "-o", model], "is the model file fixtures/transformer_model.py"),
        (["check", str(loop)], "loop.py: cannot open it"),
        (["check", "missing.py"], "missing.py: no such file"),
        (["profile", model, "--out", str(not_a_dir / "traces")], "is not a folder"),
        (["profile", model, "--seq-len", "64", "--mode", "decode"], "measures train and infer"),
        (["explain", "AL999"], "unknown rule 'AL999'"),
        (["check", model, "--config", str(configs["latin1"])], "invalid TOML: not UTF-8"),
        (["check", model, "--config", str(configs["tool_scalar"])],
         "tool.archlint must be a table"),
        (["check", model, "--config", str(configs["models_int"])],
         "models must be a list of paths"),
        (["check", model, "--config", str(configs["deep"])], "invalid TOML"),
        (["check", model, "--config", str(configs["batch_bool"])],
         "batch = true: setting batch: True is not an integer"),
        (["check", model, "--config", str(configs["latency_nan"])], "is not a finite number"),
        (["check", model, "--config", str(configs["option_float"])],
         "rules.AL102.threshold = 1.5: expected a int"),
        (["check", model, "--config", str(configs["select_typo"])],
         "unknown rule code 'NOPE'"),
        (["check", model, "--config", str(configs["timeout_negative"])],
         "timeout = -1: timeout -1 must be a positive"),
        (["check", model, "--config", str(configs["entries_int"])],
         "model must be an array of tables"),
        (["check", model, "--config", str(configs["probe_len_huge"])],
         "probe_len = 1099511627776: setting probe_len: 1099511627776 exceeds 4096: probes "
         "run on real tensors"),
    ]
    runs = [args for args, _ in cases] + [["rules"], ["explain", "AL106"]]
    result = subprocess.run(
        [sys.executable, "-c", REFUSALS_SCRIPT, json.dumps(runs)],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    (rules_code, _, rules), (explain_code, _, explained) = document["results"][-2:]
    assert rules_code == 0 and re.search(r"AL002 +budget-not-evaluated +error", rules)
    assert explain_code == 0 and explained.startswith("AL106 positional-table-too-short")
    for (args, expected), (code, stderr, _) in zip(cases, document["results"]):
        assert code == 2, (args, stderr)
        assert "Traceback" not in stderr, (args, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("archlint: error: "), (args, stderr)
        assert expected in lines[0], (args, lines[0])
    assert document["torch"] is False     # every refusal, `rules` and `explain`: no torch
