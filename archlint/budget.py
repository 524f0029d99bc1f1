"""Budgets a model must meet, asserted from a test: ``archlint.assert_budget(model, ...)``.

A budget is a limit on one predicted quantity at the target length, read from the
report's analysis sections (memory and FLOPs from ``report.cost``, serial steps and
receptive field from ``report.reach``). Each budget also sets the matching setting
(``memory``, ``max_serial_steps``, ``span``), so the rule that watches it runs too and
its code is named in the failure. The failure lists every budget, pytest-style::

    archlint: 2 of 3 budgets failed for model.py:GPT at seq_len=8192 (train, batch 1, float32)
      memory               predicted 34.2 GB > 16.0 GB  AL201 memory-over-budget
      max_serial_steps     predicted 8192 > 64          AL301 serial-steps-over-budget
      min_receptive_field  predicted 8192 >= 512        ok
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archlint.errors import ArchlintError
from archlint.units import MAX_DIGITS, format_bytes, format_count, parse_length

if TYPE_CHECKING:
    from torch import nn

    from archlint.report import Report
    from archlint.settings import Settings

#: settings a caller may pass next to the budgets
SETTINGS = ("seq_len", "batch", "dtype", "mode", "optimizer", "causal", "probe_len", "dynamic",
            "parallel", "checkpoint", "zero", "offload")


@dataclass(frozen=True)
class Budget:
    """One kind of budget: how to read its limit, measure the model, and compare."""

    key: str                                      # keyword of assert_budget / the marker
    description: str
    direction: str                                # "max": value <= limit; "min": value >= limit
    code: str | None                              # the rule that reports a violation, if any
    parse: Callable[[Any], float]
    show: Callable[[float], str]
    measure: Callable[[Report, int], float | None]
    setting: str | None = None                    # settings key the limit also sets

    def passes(self, value: float, limit: float) -> bool:
        return value <= limit if self.direction == "max" else value >= limit


@dataclass(frozen=True)
class BudgetResult:
    """A budget checked at one length."""

    budget: Budget
    seq_len: int
    limit: float
    value: float | None                           # None: the analysis could not predict it

    @property
    def passed(self) -> bool:
        return self.value is not None and self.budget.passes(self.value, self.limit)

    def label(self, several_lengths: bool) -> str:
        return f"{self.budget.key} @{self.seq_len}" if several_lengths else self.budget.key

    def verdict(self) -> str:
        """``predicted 8 > 4`` (the comparison that failed or held)."""
        budget = self.budget
        if self.value is None:
            return "not predicted (see the report's notes)"
        if budget.direction == "max":
            sign = "<=" if self.passed else ">"
        else:
            sign = ">=" if self.passed else "<"
        return f"predicted {budget.show(self.value)} {sign} {budget.show(self.limit)}"

    def outcome(self) -> str:
        """``ok``, or the code and name of the rule that reports the violation."""
        if self.passed:
            return "ok"
        if self.budget.code is None:
            return "exceeded (no rule watches this budget)"
        return f"{self.budget.code} {_rule_name(self.budget.code)}"

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget.key, "seq_len": self.seq_len, "limit": self.limit,
                "value": self.value, "passed": self.passed, "code": self.budget.code}


class BudgetExceeded(AssertionError):
    """Raised by :func:`assert_budget`; ``results`` holds every budget checked."""

    def __init__(self, message: str, report: Report, results: list[BudgetResult]) -> None:
        super().__init__(message)
        self.report = report
        self.results = results


# ----------------------------------------------------------------- measurements


def _section(report: Report, name: str) -> Any:
    section = getattr(report, name)
    if section is None:
        raise ArchlintError(
            f"{report.model.name}: the {name} analysis did not run, so its budgets cannot "
            "be checked")
    return section


def _cost_at(report: Report, n: int, key: str) -> float | None:
    """A figure of the cost section's prediction at ``n`` (``lengths`` in its JSON)."""
    for entry in _section(report, "cost").to_dict().get("lengths", []):
        if entry.get("seq_len") == n:
            return entry.get(key)
    return None


def peak_memory(report: Report, n: int) -> float | None:
    """Predicted peak bytes of one step at ``n`` (``report.cost``); under a parallel
    layout, of one device (``report.parallel``)."""
    if report.parallel is not None:
        step = report.parallel.at(n)
        return None if step is None else float(step.peak)
    return _cost_at(report, n, "peak_bytes")


def step_flops(report: Report, n: int) -> float | None:
    """Predicted FLOPs of one step at ``n`` (``report.cost``)."""
    return _cost_at(report, n, "flops")


def serial_steps(report: Report, n: int) -> float | None:
    """S(n): ordered steps on the critical path of one forward (``report.reach``, whose
    ``serial_steps`` is an expression in n, evaluated here at each checked length)."""
    return float(_section(report, "reach").serial_steps.at(n))


def receptive_field(report: Report, n: int) -> float | None:
    """R at ``n``: input positions that can reach one output position, at most n
    (``report.reach.receptive_field``, first sequence axis)."""
    return float(min(_section(report, "reach").receptive_field.size.at(n), n))


def _memory(value: Any) -> float:
    from archlint.settings import make_settings

    return float(make_settings(memory=value).memory)


def _count(value: Any) -> float:
    """``2e12``, ``"1.5T"``, ``"800G"`` -> a number (SI suffixes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a number of FLOPs (2e12, '1.5T')")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().upper().replace("FLOPS", "").replace("FLOP", "").strip()
        if len(text) > MAX_DIGITS:
            raise ValueError(f"{value[:20]!r}... has more than {MAX_DIGITS} characters")
        scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}.get(text[-1:], 1.0)
        try:
            number = float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            raise ValueError(f"{value!r} is not a number of FLOPs (2e12, '1.5T')") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if number <= 0:
        raise ValueError(f"{value!r} must be positive")
    return number


def _steps(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or int(value) != value or int(value) <= 0:
        raise ValueError(f"{value!r} must be a positive integer")
    return float(int(value))


BUDGETS: dict[str, Budget] = {budget.key: budget for budget in (
    Budget("memory", "peak memory of one step (train: with gradients and optimizer "
           "state) on a size or a device", "max", "AL201", _memory, format_bytes,
           peak_memory, setting="memory"),
    Budget("max_flops", "FLOPs of one step", "max", None, _count,
           lambda v: format_count(v) + "FLOP", step_flops),
    Budget("max_serial_steps", "ordered steps on the critical path of one forward", "max",
           "AL301", _steps, lambda v: str(int(v)), serial_steps, setting="max_serial_steps"),
    Budget("min_receptive_field", "input positions that can reach one output position",
           "min", "AL101", lambda v: float(parse_length(v)), lambda v: str(int(v)),
           receptive_field, setting="span"),
)}


# ----------------------------------------------------------------- the assertion


def check_budgets(model: str | nn.Module, *, example_input: Callable | None = None,
                  settings: Settings | None = None,
                  **limits: Any) -> tuple[Report, list[BudgetResult]]:
    """Analyze ``model`` and measure every budget in ``limits`` at every ``seq_len``."""
    from archlint.api import analyze

    budgets, options = split_arguments(limits)
    for key, (budget, _) in budgets.items():
        if budget.setting is not None:
            options.setdefault(budget.setting, limits[key])
    report = analyze(model, settings=settings, example_input=example_input, **options)
    results = [BudgetResult(budget, n, limit, budget.measure(report, n))
               for budget, limit in budgets.values() for n in report.settings.seq_len]
    return report, results


def split_arguments(arguments: dict[str, Any]) -> tuple[dict[str, tuple[Budget, float]],
                                                        dict[str, Any]]:
    """Budgets (parsed) and settings; an unknown or malformed argument is an ArchlintError."""
    budgets: dict[str, tuple[Budget, float]] = {}
    options: dict[str, Any] = {}
    for key, value in arguments.items():
        if key in BUDGETS:
            try:
                budgets[key] = (BUDGETS[key], BUDGETS[key].parse(value))
            except ArchlintError as exc:
                raise ArchlintError(f"budget {key}={value!r}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise ArchlintError(f"budget {key}={value!r}: {exc}") from None
        elif key in SETTINGS:
            options[key] = value
        else:
            raise ArchlintError(
                f"unknown budget or setting {key!r}; budgets: {', '.join(BUDGETS)}; "
                f"settings: {', '.join(SETTINGS)}")
    if not budgets:
        raise ArchlintError(f"no budget given; pass one of {', '.join(BUDGETS)}")
    return budgets, options


def assert_budget(model: str | nn.Module, *, example_input: Callable | None = None,
                  **limits: Any) -> Report:
    """Assert that a model meets its budgets at the target length(s); return the report.

    ``model`` is an ``nn.Module`` or a target (``"model.py"``, ``"pkg.mod:attr"``).
    Budgets: ``memory="16GB"`` (or a device name), ``max_flops="2T"``,
    ``max_serial_steps=64``, ``min_receptive_field=512``. Settings: ``seq_len`` (one or
    a list: every length is checked), ``batch``, ``dtype``, ``mode``, ``optimizer``,
    ``causal``. Raises :class:`BudgetExceeded` (an ``AssertionError``) listing every
    budget with its predicted value and, for a failure, the rule code.
    """
    __tracebackhide__ = True
    report, results = check_budgets(model, example_input=example_input, **limits)
    failed = [result for result in results if not result.passed]
    if failed:
        raise BudgetExceeded(failure_message(report, results), report, results)
    return report


def failure_message(report: Report, results: list[BudgetResult]) -> str:
    """A header, then one aligned line per budget: name, verdict, rule code or ``ok``."""
    settings = report.settings
    failed = sum(1 for result in results if not result.passed)
    several = len(settings.seq_len) > 1
    lines = [f"archlint: {failed} of {len(results)} budgets failed for {report.model.name} "
             f"at seq_len={', '.join(str(n) for n in settings.seq_len)} ({settings.mode}, "
             f"batch {settings.batch}, {settings.dtype})"]
    labels = [result.label(several) for result in results]
    verdicts = [result.verdict() for result in results]
    label_width = max(20, *(len(label) for label in labels))
    verdict_width = max(len(verdict) for verdict in verdicts)
    for result, label, verdict in zip(results, labels, verdicts):
        lines.append(f"  {label:<{label_width}} {verdict:<{verdict_width}}  "
                     f"{result.outcome()}".rstrip())
    return "\n".join(lines)


def _rule_name(code: str) -> str:
    from archlint.rules import rule_by_code

    rule = rule_by_code(code)
    return rule.name if rule is not None else ""
