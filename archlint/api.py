"""The pipeline in one place: load -> trace -> classify -> analyze -> rules.

``analyze`` is the Python API (``archlint.analyze(model, seq_len="8k")``); the CLI, the
pre-commit hook and the pytest plugin all go through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from archlint import cost, parallel, reach
from archlint.classify import classify
from archlint.findings import Finding
from archlint.guard import stage
from archlint.load import LoadedModel, load_module, load_target
from archlint.report import ModelInfo, Report
from archlint.rules import run_rules
from archlint.session import CheckSession
from archlint.settings import Settings, make_settings
from archlint.suppress import apply_suppressions
from archlint.trace import trace_model


def analyze(model: str | nn.Module, *, settings: Settings | None = None,
            example_input: Callable[[int, int], Any] | None = None,
            **options: Any) -> Report:
    """Analyze a model target (``"model.py"``, ``"pkg.mod:attr"``) or an ``nn.Module``.

    ``options`` are settings as a user would type them: ``seq_len="8k"``,
    ``memory="16GB"``, ``span=512``, ``mode="infer"`` (see :class:`Settings`). For a
    file target without explicit ``settings``, ``[tool.archlint]`` of its project
    applies first, as on the command line. ``# archlint: noqa`` comments apply always.
    """
    if isinstance(model, str) and settings is None and example_input is None:
        return CheckSession(overrides=options).analyze(model)
    resolved = make_settings(settings, **options)
    if isinstance(model, nn.Module):
        loaded = load_module(model, example_input)
    else:
        loaded = load_target(model, values_needed=resolved.dynamic)
    report = analyze_loaded(loaded, resolved)
    apply_suppressions(report, resolved)
    return report


def check(model: str | nn.Module, **options: Any) -> list[Finding]:
    """The findings for a model, after suppressions: ``archlint check`` as a function."""
    return analyze(model, **options).findings


def analyze_loaded(loaded: LoadedModel, settings: Settings) -> Report:
    with stage(f"tracing {loaded.name}"):
        graph = trace_model(loaded, target_len=settings.target_len)
    with stage(f"classifying the layers of {loaded.name}"):
        graph = classify(graph)
    report = Report(
        model=ModelInfo(
            name=loaded.name, file=loaded.file, class_name=type(loaded.module).__name__,
            parameters=sum(p.numel() for p in loaded.module.parameters()),
            input=loaded.input_spec.description),
        settings=settings, graph=graph)
    # analyses: each adds its section to the report
    # weights never built for real (too large for the machine) cannot be probed
    probed = settings.with_(dynamic=False) if loaded.unbuilt and settings.dynamic else settings
    with stage(f"reach analysis of {loaded.name}"):
        report.reach = reach.analyze(graph, probed)
    if loaded.unbuilt_note and report.reach is not None:
        report.reach.notes.append(
            f"gradient probes skipped: {loaded.unbuilt_note}; static results only"
            if settings.dynamic else loaded.unbuilt_note)
    with stage(f"cost analysis of {loaded.name}"):
        report.cost = cost.analyze(graph, settings)
    with stage(f"parallel layouts of {loaded.name}"):
        report.parallel = parallel.analyze(graph, settings, report.cost)
    with stage(f"rules on {loaded.name}"):
        report.findings = run_rules(report, settings)
    if settings.baseline is not None:
        compare_with_baseline(report, settings.baseline)
    return report


def compare_with_baseline(report: Report, path: str,
                          key: tuple[str, str] | None = None) -> list[Finding]:
    """Attach the diff against the baseline file ``path`` (the entry under ``key``, by
    default the model's name and target length) and add its AL501-AL503 findings;
    returns those findings."""
    from archlint import baseline

    settings = report.settings
    visible = dataclasses.replace(report, findings=list(report.findings))
    apply_suppressions(visible, settings.with_(warn_unused_noqa=False))   # as the user sees them
    report.baseline = baseline.compare(visible, path, settings.baseline_tolerance, key=key)
    regressions = run_rules(report, settings, codes=baseline.RULE_CODES)
    report.findings = sorted(report.findings + regressions, key=Finding.sort_key)
    return regressions
