"""The pytest plugin, run for real with ``pytester``: markers, fixture, messages, report.

Expected values are the fixtures' hand-derived figures: an 8-layer k=3 conv stack has
receptive field 1 + 2·8 = 17 and 8 serial steps; a 2-layer LSTM at n has 2n serial steps.
"""

from __future__ import annotations

import json
from importlib.metadata import distributions
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
CNN = str(ROOT / "fixtures" / "cnn_stack_k3.py")
LSTM = str(ROOT / "fixtures" / "lstm_model.py")


@pytest.fixture(autouse=True, scope="module")
def pipeline():
    """pytester drops modules first imported by an inner run when the test ends; torch's C
    extension cannot be imported twice, so the whole pipeline is imported (and run) here."""
    import archlint.api
    import archlint.budget  # noqa: F401

    return archlint.api.analyze(CNN, seq_len=64)


def needs(report, *sections: str) -> None:
    """The analyses a budget reads are part of the pipeline (archlint.api)."""
    missing = [name for name in sections if getattr(report, name) is None]
    assert not missing, f"report.{', report.'.join(missing)} missing from archlint.api"


def test_plugin_is_registered_as_a_pytest11_entry_point():
    # as pytest looks: every installed distribution, not only the first named archlint
    found = {ep.value for dist in distributions() for ep in dist.entry_points
             if ep.group == "pytest11" and ep.name == "archlint"}
    assert found == {"archlint.pytest_plugin"}, \
        "reinstall archlint (pip install -e .) to register the pytest plugin"


def test_marker_is_documented(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.archlint(target=None, **budgets): Assert that "
                                 "a model meets its budgets*"])


def test_passing_budgets(pytester, pipeline):
    needs(pipeline, "reach")
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.archlint({CNN!r}, seq_len=512, min_receptive_field=17,
                              max_serial_steps=8)
        def test_cnn():
            pass
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_receptive_field_below_the_minimum(pytester, pipeline):
    needs(pipeline, "reach")
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.archlint({CNN!r}, seq_len=512, min_receptive_field=512)
        def test_cnn():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "archlint: 1 of 1 budgets failed for *cnn_stack_k3.py:* at seq_len=512 "
        "(train, batch 1, float32)",
        "  min_receptive_field  predicted 17 < 512  AL101*"])
    assert "Traceback" not in result.stdout.str() and "budget.py" not in result.stdout.str()


def test_serial_steps_over_budget_at_each_length(pytester, pipeline):
    needs(pipeline, "reach")
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.archlint({LSTM!r}, seq_len=[64, 1024], max_serial_steps=256,
                              dynamic=False)
        def test_lstm():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "archlint: 1 of 2 budgets failed for *lstm_model.py:* at seq_len=64, 1024 *",
        "  max_serial_steps @64   predicted 128 <= 256  ok",
        "  max_serial_steps @1024 predicted 2048 > 256  AL301*"])


def test_memory_and_flops_over_budget_with_the_fixture(pytester, pipeline):
    """Values must be the ones the cost analysis predicts: read them from its report."""
    needs(pipeline, "cost")
    pytester.makepyfile(f"""
        import pytest
        from archlint.load import load_target

        @pytest.mark.archlint(seq_len="4k", memory="1MB", max_flops="1k", dynamic=False)
        def test_lstm(archlint_budget):
            archlint_budget(load_target({LSTM!r}).module)
    """)
    report_path = pytester.path / "archlint.json"
    result = pytester.runpytest(f"--archlint-report={report_path}")
    result.assert_outcomes(failed=1)
    document = json.loads(report_path.read_text())
    [entry] = document["reports"]
    assert entry["test"] == "test_memory_and_flops_over_budget_with_the_fixture.py::test_lstm"
    budgets = {b["budget"]: b for b in entry["budgets"]}
    assert budgets["memory"]["limit"] == 1e6 and not budgets["memory"]["passed"]
    assert budgets["max_flops"]["limit"] == 1e3 and not budgets["max_flops"]["passed"]
    assert (budgets["memory"]["code"], budgets["max_flops"]["code"]) == ("AL201", None)
    [cost] = entry["cost"]["lengths"]                     # the cost section's own prediction
    assert cost["seq_len"] == budgets["memory"]["seq_len"] == 4096
    assert budgets["memory"]["value"] == cost["peak_bytes"] > 1e6
    assert budgets["max_flops"]["value"] == cost["flops"] > 1e3
    from archlint.units import format_bytes, format_count
    result.stdout.fnmatch_lines([
        "archlint: 2 of 2 budgets failed for LSTMModel at seq_len=4096 *",
        f"  memory               predicted {format_bytes(budgets['memory']['value'])} > "
        "1.0 MB * AL201*",
        f"  max_flops            predicted {format_count(budgets['max_flops']['value'])}FLOP > "
        "1.0 kFLOP  exceeded (no rule watches this budget)"])


def test_assert_budget_in_a_plain_test(pytester, pipeline):
    needs(pipeline, "reach")
    pytester.makepyfile(f"""
        import archlint

        def test_cnn():
            report = archlint.assert_budget({CNN!r}, seq_len=512, max_serial_steps=8)
            assert report.settings.max_serial_steps == 8

        def test_cnn_too_deep():
            archlint.assert_budget({CNN!r}, seq_len=512, max_serial_steps=4)
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["  max_serial_steps     predicted 8 > 4  AL301*"])


@pytest.mark.parametrize("arguments,message", [
    ("'m.py', memroy='16GB'", "unknown budget or setting 'memroy'; budgets: memory, *"),
    ("'m.py', memory='16GX'", "budget memory='16GX': memory size '16GX' is not a size*"),
    ("'m.py', max_serial_steps=2.5", "budget max_serial_steps=2.5: 2.5 must be a positive*"),
    ("'m.py', min_receptive_field='wide'", "budget min_receptive_field='wide': sequence len*"),
    ("'m.py', seq_len=512", "no budget given; pass one of memory, max_flops, *"),
    ("'a.py', 'b.py', memory='1GB'", "takes one positional argument, a model target*"),
    ("3, memory='1GB'", "takes one positional argument, a model target*"),
])
def test_bad_marker_argument_is_an_error_of_that_test(pytester, arguments, message):
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.archlint({arguments})
        def test_bad():
            pass

        def test_unmarked():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.archlint: {message}"])


def test_marker_without_target_needs_the_fixture(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.archlint(seq_len=512, max_serial_steps=8)
        def test_forgot():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.archlint without a target: pass one*"])


def test_unloadable_target_fails_with_one_line(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.archlint("missing_model.py", max_serial_steps=8)
        def test_missing():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*archlint: missing_model.py: no such file*"])


@pytest.mark.parametrize("arguments,message", [
    ("target=5, memory='1GB'", "target=5 is not a model target; pass a string such as*"),
    ("'m.py', target='m.py', memory='1GB'", "the model target is given twice*"),
    ("'m.py', seq_len='abc', memory='1GB'", "sequence length 'abc' is not a length*"),
    ("'m.py', batch=True, memory='1GB'", "setting batch: True is not an integer*"),
    ("'m.py', max_flops=float('nan')", "budget max_flops=nan: nan is not a finite number"),
    ("'m.py', max_flops=float('inf')", "budget max_flops=inf: inf is not a finite number"),
    ("'m.py', max_serial_steps=float('nan')", "budget max_serial_steps=nan: nan must be a *"),
])
def test_hostile_marker_arguments_are_setup_errors_of_one_line(pytester, arguments, message):
    """Refused in setup, before the model is loaded: the test body never runs."""
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.archlint({arguments})
        def test_bad():
            raise AssertionError("the body ran")
    """)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_bad*",
                                 f"@pytest.mark.archlint: {message}"])
    assert "the body ran" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("option", ["--archlint-report", "--archlint-write-baseline"])
def test_an_unwritable_report_path_stops_the_session_before_any_test(pytester, tmp_path,
                                                                     option):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    pytester.makepyfile("""
        def test_never():
            raise AssertionError("a test ran")
    """)
    result = pytester.runpytest(option, str(blocker / "report.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == [f"ERROR: {option} {blocker / 'report.json'}: the folder {blocker} does "
                      f"not exist; create it or pass another {option} path"], errors
    assert "a test ran" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()


def test_a_report_path_that_breaks_during_the_session_is_one_line(pytester, tmp_path):
    """The folder existed when the session started and is gone when it ends."""
    folder = tmp_path / "reports"
    folder.mkdir()
    pytester.makepyfile(f"""
        import pytest, shutil

        @pytest.mark.archlint({CNN!r}, seq_len=64, max_serial_steps=8)
        def test_cnn():
            shutil.rmtree({str(folder)!r})
    """)
    result = pytester.runpytest("--archlint-report", str(folder / "r.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines([f"ERROR: archlint: {folder / 'r.json'}: cannot write (No "
                                 "such file or directory)"])
    assert "INTERNALERROR" not in result.stdout.str() and "Traceback" not in result.stdout.str()
