"""pytest plugin (entry point ``pytest11``): assert model budgets from a test suite.

Three ways to write a budget test::

    def test_gpt_fits():                                   # a plain function
        archlint.assert_budget(build_model(), seq_len=8192, memory="16GB")

    @pytest.mark.archlint("models/gpt.py", seq_len="8k", max_serial_steps=64)
    def test_gpt_budget():                                 # the marker alone: a target
        pass

    @pytest.mark.archlint(seq_len="8k", memory="16GB")
    def test_built_model(archlint_budget):                 # the marker + the fixture
        archlint_budget(build_model(size="small"))

A failed budget fails the test with one line per budget (value, limit, rule code) instead
of a traceback into archlint. A bad marker argument (an unknown budget, ``target=5``,
``seq_len="abc"``) is an error in that test's setup; a bad ``--archlint-report`` or
``--archlint-write-baseline`` path stops the session before any test runs.
``--archlint-report PATH`` (or the ``archlint_report`` ini option) writes every report
the session produced as JSON, with each test's budgets. ``--archlint-baseline PATH``
compares each budget check with the entry stored for its test by
``--archlint-write-baseline PATH`` and fails the test on a regression (AL501-AL503).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

MARKER = "archlint"
_REPORTS = pytest.StashKey[list]()
_CALLED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("archlint", "model budgets (archlint)")
    group.addoption("--archlint-report", dest="archlint_report", metavar="PATH",
                    help="write the JSON report of every archlint budget check to PATH")
    parser.addini("archlint_report", "default for --archlint-report", default=None)
    group.addoption("--archlint-baseline", dest="archlint_baseline", metavar="PATH",
                    help="fail a budget test whose report regressed against the baseline PATH")
    group.addoption("--archlint-write-baseline", dest="archlint_write_baseline",
                    metavar="PATH", help="write the baseline of every budget check to PATH")


def pytest_configure(config: pytest.Config) -> None:
    from archlint.budget import assert_budget

    summary = (assert_budget.__doc__ or "").strip().splitlines()[0]
    config.addinivalue_line(
        "markers", f"{MARKER}(target=None, **budgets): {summary} Without a target, the "
        "test calls the archlint_budget fixture with the model.")
    config.stash[_REPORTS] = []
    _check_output_paths(config)
    path = config.getoption("archlint_baseline", None)
    if path:
        from archlint.baseline import load_baseline
        from archlint.errors import ArchlintError

        try:
            load_baseline(path)
        except ArchlintError as exc:
            raise pytest.UsageError(f"--archlint-baseline: {exc}") from None


def _check_output_paths(config: pytest.Config) -> None:
    """``--archlint-report`` and ``--archlint-write-baseline`` are checked before any test
    runs: a session of minutes must not end in a traceback because a path is bad."""
    from archlint.errors import ArchlintError
    from archlint.outputs import checked_output

    paths = {"--archlint-report": config.getoption("archlint_report", None)
             or config.getini("archlint_report"),
             "--archlint-write-baseline": config.getoption("archlint_write_baseline", None)}
    for option, path in paths.items():
        if not path:
            continue
        try:
            checked_output(str(path), [], option=option)
        except ArchlintError as exc:
            raise pytest.UsageError(str(exc)) from None


def _marker_arguments(item: pytest.Item) -> tuple[str | None, dict[str, Any]] | None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    if len(marker.args) > 1 or (marker.args and not isinstance(marker.args[0], str)):
        raise pytest.UsageError(
            "takes one positional argument, a model target such as 'model.py' or "
            "'pkg.mod:attr'")
    if marker.args and "target" in marker.kwargs:
        raise pytest.UsageError("the model target is given twice (positional and target=)")
    target = marker.args[0] if marker.args else marker.kwargs.get("target")
    if target is not None and not isinstance(target, str):
        raise pytest.UsageError(
            f"target={target!r} is not a model target; pass a string such as 'model.py' or "
            "'pkg.mod:attr' (or no target and the archlint_budget fixture)")
    return target, {k: v for k, v in marker.kwargs.items() if k != "target"}


def pytest_runtest_setup(item: pytest.Item) -> None:
    from archlint.budget import split_arguments
    from archlint.errors import ArchlintError
    from archlint.settings import make_settings

    error = None
    try:
        arguments = _marker_arguments(item)
        if arguments is not None:
            _, options = split_arguments(arguments[1])
            make_settings(**options)            # seq_len="abc": this test's setup error
    except (ArchlintError, pytest.UsageError) as exc:
        error = str(exc)
    if error is not None:
        pytest.fail(f"@pytest.mark.{MARKER}: {error}", pytrace=False)
    item.stash[_CALLED] = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield
    arguments = _marker_arguments(item)
    if arguments is None:
        return result
    target, limits = arguments
    if target is not None:
        _check(item, target, limits)
    elif not item.stash.get(_CALLED, False):
        pytest.fail(f"@pytest.mark.{MARKER} without a target: pass one "
                    f"(@pytest.mark.{MARKER}('model.py', ...)) or call the archlint_budget "
                    "fixture with the model", pytrace=False)
    return result


@pytest.fixture
def archlint_budget(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``archlint_budget(model, **budgets)``: assert the marker's budgets (and these) on a
    model; returns the :class:`~archlint.report.Report`."""
    arguments = _marker_arguments(request.node)
    marked = arguments[1] if arguments is not None else {}

    def check(model, *, example_input=None, **limits: Any):
        __tracebackhide__ = True
        request.node.stash[_CALLED] = True
        return _check(request.node, model, {**marked, **limits}, example_input)

    return check


def _check(item: pytest.Item, model: Any, limits: dict[str, Any], example_input=None):
    __tracebackhide__ = True
    from archlint.budget import BudgetExceeded, check_budgets, failure_message
    from archlint.errors import ArchlintError

    try:
        report, results = check_budgets(model, example_input=example_input, **limits)
    except ArchlintError as exc:
        error = str(exc)
    else:
        error = None
    if error is not None:
        pytest.fail(f"archlint: {error}", pytrace=False)
    item.config.stash[_REPORTS].append((item.nodeid, report, results))
    if any(not result.passed for result in results):
        raise BudgetExceeded(failure_message(report, results), report, results)
    baseline = item.config.getoption("archlint_baseline", None)
    if baseline:
        _compare(item, report, baseline)
    return report


def _compare(item: pytest.Item, report, path: str) -> None:
    """Fail the test when its report regressed against the stored baseline entry."""
    __tracebackhide__ = True
    from archlint.api import compare_with_baseline

    regressions = compare_with_baseline(report, path, key=_baseline_key(item, report))
    if regressions:
        lines = [f"  {f.code} {f.rule}: {f.message}" for f in regressions]
        pytest.fail(f"archlint: {len(regressions)} regression(s) of {report.model.name} "
                    f"against the baseline {path}:\n" + "\n".join(lines), pytrace=False)


def _baseline_key(item: pytest.Item, report) -> tuple[str, str]:
    return _key(item.nodeid, report)


def _key(nodeid: str, report) -> tuple[str, str]:
    """A budget check's baseline entry: the test's node id and the model's name (a test
    may check several models), and the target length."""
    return f"{nodeid}::{report.model.name}", str(report.settings.target_len)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A budget failure reads as its message, not as a traceback into archlint."""
    from archlint.budget import BudgetExceeded

    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, BudgetExceeded):
        report.longrepr = str(call.excinfo.value)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the baseline and the report; a path that became unwritable since the start
    is one line and a usage-error exit status, not an internal error."""
    from archlint.errors import ArchlintError

    try:
        _write_outputs(session.config)
    except (ArchlintError, OSError) as exc:
        text = exc if isinstance(exc, ArchlintError) else \
            f"{exc.filename}: cannot write ({exc.strerror})"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"ERROR: archlint: {text}", red=True)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _write_outputs(config: pytest.Config) -> None:
    written = config.getoption("archlint_write_baseline", None)
    if written and _REPORTS in config.stash:
        from archlint.baseline import write_baseline

        checks = config.stash[_REPORTS]
        write_baseline(written, [report for _, report, _ in checks],
                       [_key(nodeid, report) for nodeid, report, _ in checks])
    path = config.getoption("archlint_report") or config.getini("archlint_report")
    if not path or _REPORTS not in config.stash:
        return
    from archlint.report import SCHEMA_VERSION

    document = {"schema_version": SCHEMA_VERSION, "reports": [
        {"test": nodeid, "budgets": [result.to_dict() for result in results],
         **report.to_dict()}
        for nodeid, report, results in config.stash[_REPORTS]]}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
