"""Command line: ``archlint check | profile | advise | rules | explain``.

Exit codes: 0 clean, 1 findings at or above ``--fail-on``, 2 usage or load errors. User
errors are one line on stderr; ``--debug`` shows the traceback instead.

Settings come from ``[tool.archlint]`` in the nearest ``pyproject.toml`` (see
:mod:`archlint.config`); a flag given on the command line wins over the file.
``archlint check`` without targets checks the ``models`` the configuration lists: that
is how the pre-commit hook runs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from archlint import __version__
from archlint.errors import ArchlintError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = ("text", "json", "sarif", "github")


def _guarded(function: Callable[..., int], debug: bool, *args: Any) -> None:
    """Run a command body; user errors become one line and exit 2, Ctrl-C exits 130."""
    from archlint.sandbox import Interrupted

    try:
        code = function(*args)
    except ArchlintError as exc:
        if debug:
            raise
        click.echo(f"archlint: error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("archlint: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Interrupted as exc:
        click.echo(f"archlint: stopped by {exc}", err=True)
        sys.exit(128 + exc.signum)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archlint")
def main() -> None:
    """Static analysis of sequence models: reach and budget at any length."""


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--seq-len", "seq_len", help="Target length(s): 4096, 8k, 1k,4k,16k.")
@click.option("--span", help="Dependency distance the model must cover (e.g. 512).")
@click.option("--memory", help="Memory budget: 16GB, 80GiB, or a device name.")
@click.option("--device", help="Predict for: cpu (default), h100-80gb, a100-40gb, ..., "
                               "cuda:<size>.")
@click.option("--batch", help="Batch size (default 1).")
@click.option("--dtype", help="float32 | bfloat16 | float16.")
@click.option("--mode", help="train | infer | decode.")
@click.option("--optimizer", help="adam | adamw | sgd | none (train mode).")
@click.option("--latency", "latency_ms", help="Latency budget: 50ms, 0.2s (a number is ms).")
@click.option("--max-serial-steps", help="Budget of ordered steps per forward.")
@click.option("--causal/--no-causal", default=None, help="Declare the model (non-)causal.")
@click.option("--select", help="Rule codes or prefixes to enable (AL1,AL201).")
@click.option("--ignore", help="Rule codes or prefixes to disable.")
@click.option("--fail-on", help="Lowest severity that fails: info | warning | error.")
@click.option("--no-dynamic", "dynamic", flag_value=False, default=None,
              help="Skip the gradient probes.")
@click.option("--warn-unused-noqa", "warn_unused_noqa", flag_value=True, default=None,
              help="Report `# archlint: noqa` comments that suppress nothing (AL001).")
@click.option("--parallel", help="Layout per device: fsdp=8 or dp=4,fsdp=8,tp=2,cp=2.")
@click.option("--checkpoint", help="Activation checkpointing: none | full | selective.")
@click.option("--zero", help="ZeRO stage of the data-parallel sharding: 1 | 2 | 3.")
@click.option("--offload", "offload", flag_value=True, default=None,
              help="Keep sharded parameters, gradients and optimizer state on the host.")
@click.option("--capacity-factor", "capacity_factor",
              help="Mixture of experts: tokens per expert as a multiple of the balanced "
                   "share (default 1).")
@click.option("--baseline", help="Compare with this baseline file (AL501-AL503 regressions).")
@click.option("--baseline-tolerance", "baseline_tolerance",
              help="Rise of peak memory or FLOPs that is a regression (0.02 or 2%).")
@click.option("--write-baseline", "write_baseline", metavar="FILE",
              help="Write this run's baseline (peak, FLOPs, R, L, S, findings) to FILE.")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(FORMATS), help="Output format.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Color text output (auto: only on a terminal).")
@click.option("--output", "-o", metavar="FILE",
              help="Write the report to this file instead of stdout.")
@click.option("--plot", "plot_dir", metavar="DIR",
              help="Write PNG pictures and an HTML page per model to DIR (archlint[plot]).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Use this pyproject.toml instead of the nearest one.")
@click.option("--isolated", is_flag=True, help="Ignore every configuration file.")
@click.option("--timeout", help="Seconds one model may take (default 300; 90s, 5min).")
@click.option("--no-cache", "no_cache", is_flag=True,
              help="Analyze again even when an unchanged model's answer is cached.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check(targets: tuple[str, ...], output_format: str, color: str, output: str | None,
          config_path: str | None, isolated: bool, timeout: str | None, debug: bool,
          write_baseline: str | None, plot_dir: str | None, no_cache: bool,
          **options: Any) -> None:
    """Analyze model files (model.py, model.py:NAME, package.module:attr).

    Without TARGETS, checks the `models` listed in [tool.archlint]. An unchanged model
    checked again with the same settings is answered from the cache (see --no-cache).
    """
    _guarded(_check, debug, targets, output_format, color, output, config_path, isolated,
             timeout, debug, options, write_baseline, not no_cache, plot_dir)


def _check(targets: tuple[str, ...], output_format: str, color: str, output: str | None,
           config_path: str | None, isolated: bool, timeout: str | None, debug: bool,
           options: dict[str, Any], write_baseline: str | None = None,
           use_cache: bool = True, plot_dir: str | None = None) -> int:
    from archlint.config import config_for
    from archlint.outputs import checked_output
    from archlint.sandbox import run_isolated
    from archlint.target import parse_target

    overrides = {key: value for key, value in options.items() if value is not None}
    if write_baseline is not None and "baseline" not in overrides:
        overrides["baseline"] = ""                  # writing accepts this run: no comparison
    if overrides.get("baseline"):
        from archlint.baseline import load_baseline

        load_baseline(overrides["baseline"])          # a bad file fails before the analysis
    chosen = list(dict.fromkeys(targets)) or _configured_targets(config_path, isolated)
    resolved = {}
    for target in chosen:                      # every refusal before torch is imported
        parsed = parse_target(target)
        config = config_for(target, config_path, isolated)
        resolved[target] = (parsed, config, config.settings_for(target, overrides))
    seconds = _timeout(timeout, config_path, isolated, chosen[0])
    output = checked_output(output, chosen)
    write_baseline = checked_output(write_baseline, chosen, option="--write-baseline")
    plot_dir = _checked_plot_dir(plot_dir)
    use_color = output is None and output_format == "text" and _color(color)
    root = os.getcwd()
    cache_key = _cache_key(resolved, output_format, use_color) if (
        use_cache and write_baseline is None and plot_dir is None) else None
    if cache_key is not None:
        from archlint.cache import lookup

        answer = lookup(cache_key)
        if answer is not None:
            _emit(answer.text, output, use_color)
            return answer.code

    def analysis(reporter) -> tuple[str, int]:  # noqa: ANN001 - runs in the child
        import archlint.api  # noqa: F401 - importing torch is not the first model's time
        from archlint.format import FormatOptions, render
        from archlint.session import CheckSession

        _quiet_library_warnings()
        session = CheckSession(overrides=overrides, config_path=config_path,
                               isolated=isolated)
        reports = []
        for target in chosen:
            reporter.target(target)
            reports.append(session.analyze(target))
            os.chdir(root)                     # a model that changed directory
        _refuse_undividable_layouts(reports)
        if write_baseline is not None:
            from archlint.baseline import write_baseline as write

            write(write_baseline, reports)
        if plot_dir is not None:
            _write_plots(reports, plot_dir)
        text = render(reports, output_format, FormatOptions(color=use_color))
        failing = [f for r in reports for f in _gating(r) if f.at_least(r.settings.fail_on)]
        if cache_key is not None:
            from archlint.cache import project_files

            reporter.send(deps=project_files(
                parsed.path for parsed, _, _ in resolved.values() if parsed.path))
        return text, EXIT_FINDINGS if failing else EXIT_CLEAN

    outcome = run_isolated(analysis, seconds, debug)
    if outcome.error is not None:
        if outcome.debug:
            click.echo(outcome.debug.rstrip(), err=True)
        raise ArchlintError(outcome.error)
    _emit(outcome.text, output, use_color)
    if cache_key is not None and outcome.deps:
        from archlint.cache import CachedAnswer, store

        store(cache_key, CachedAnswer(outcome.text, outcome.code), outcome.deps)
    return outcome.code


def _emit(text: str, output: str | None, use_color: bool) -> None:
    from archlint.outputs import write_report

    if output is None:
        click.echo(text, nl=False, color=use_color)
    else:
        write_report(output, text)


def _cache_key(resolved: dict, output_format: str, use_color: bool) -> str | None:
    """The cache key of this invocation, or None where the cache must not answer
    (``--no-cache`` is handled by the caller; ``cache = false``, ``ARCHLINT_NO_CACHE``)."""
    from archlint.cache import disabled_by_environment, file_digest, invocation_key

    if disabled_by_environment() or any(not config.cache
                                        for _, config, _ in resolved.values()):
        return None
    baselines = sorted({settings.baseline for _, _, settings in resolved.values()
                        if settings.baseline})
    return invocation_key({
        "targets": [(target, settings.to_dict()) for target, (_, _, settings)
                    in resolved.items()],
        "output_format": output_format, "color": use_color,
        "baselines": [(path, file_digest(path)) for path in baselines],
    })


def _checked_plot_dir(plot_dir: str | None) -> str | None:
    """``--plot DIR``: matplotlib importable and DIR creatable, or exit 2 before the
    analysis (neither torch nor matplotlib is imported to tell)."""
    if plot_dir is None:
        return None
    from archlint.plot import checked_plot_directory

    return checked_plot_directory(plot_dir, "--plot")


def _write_plots(reports: list, plot_dir: str, advice: list | None = None) -> None:
    """The pictures of every report (in the child), and one line on stderr saying where;
    ``advice``: one AdviceReport per report (``archlint advise --plot``)."""
    from archlint.plot import write_plots

    pages = [path for path in write_plots(reports, plot_dir, advice) if path.suffix == ".html"]
    which = pages[0].name if len(pages) == 1 else f"{len(pages)} models, one .html page each"
    print(f"archlint: pictures in {plot_dir} ({which})", file=sys.stderr, flush=True)


def _refuse_undividable_layouts(reports: list) -> None:
    """A ``--parallel`` layout the model cannot take is a usage error (AL208), exit 2."""
    for report in reports:
        for finding in report.findings:
            if finding.code == "AL208":
                where = f"{finding.location}: " if finding.location else ""
                raise ArchlintError(f"{where}AL208 {finding.message}; {finding.fix}")


def _gating(report) -> list:
    """The findings that decide the exit code: against a baseline that has the model,
    only its regressions (AL501-AL503); the accepted findings are still shown."""
    from archlint.baseline import RULE_CODES

    if report.baseline is not None and report.baseline.found:
        return [f for f in report.findings if f.code in RULE_CODES]
    return report.findings


def _configured_targets(config_path: str | None, isolated: bool) -> list[str]:
    from archlint.config import config_for

    config = config_for(None, config_path, isolated)
    targets = config.model_targets()
    if not targets:
        where = config.label if config.path else f"a pyproject.toml at or above {os.getcwd()}"
        raise ArchlintError(
            f"no model given and no [tool.archlint] models in {where}; pass a model file "
            "(archlint check model.py) or list them: models = [\"models/*.py\"]")
    return targets


def _timeout(flag: str | None, config_path: str | None, isolated: bool, target: str) -> float:
    """``--timeout``, else ``timeout`` of the configuration, else the default."""
    from archlint.config import DEFAULT_TIMEOUT, config_for, parse_timeout

    if flag is not None:
        try:
            return parse_timeout(flag)
        except ArchlintError as exc:
            raise ArchlintError(f"--timeout: {exc}") from None
    configured = config_for(target, config_path, isolated).timeout
    return DEFAULT_TIMEOUT if configured is None else configured


def _quiet_library_warnings() -> None:
    """torch's and archlint's own warnings say nothing to a user (the report does);
    warnings raised by the user's code are theirs and stay visible."""
    import warnings

    for module in (r"torch(\.|$)", r"archlint(\.|$)"):
        warnings.filterwarnings("ignore", module=module)


def _color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


@main.command()
@click.argument("target")
@click.option("--seq-len", "seq_len", help="Lengths to measure: 512,1024,2048.")
@click.option("--batch", help="Batch size (default 1).")
@click.option("--dtype", help="float32 | bfloat16 | float16.")
@click.option("--mode", help="train | infer.")
@click.option("--optimizer", help="adam | adamw | sgd | none (train mode).")
@click.option("--out", "out_dir", default="profile-traces", show_default=True,
              type=click.Path(file_okay=False), help="Folder for *.pt.trace.json traces.")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(["text", "json"]), help="Output format.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Read settings from this pyproject.toml.")
@click.option("--isolated", is_flag=True, help="Ignore every configuration file.")
@click.option("--timeout", help="Seconds the whole profile may take (default 300).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def profile(target: str, out_dir: str, output_format: str, config_path: str | None,
            isolated: bool, timeout: str | None, debug: bool, **options: Any) -> None:
    """Measure peak memory and time per step at each length, beside the prediction.

    A length whose predicted peak does not fit the free memory is refused, never run.
    Exit 1 when a length was refused or could not be measured.
    """
    _guarded(_profile, debug, target, out_dir, output_format, config_path, isolated,
             timeout, debug, options)


def _profile(target: str, out_dir: str, output_format: str, config_path: str | None,
             isolated: bool, timeout: str | None, debug: bool, options: dict[str, Any]) -> int:
    from archlint.config import config_for
    from archlint.outputs import checked_directory
    from archlint.sandbox import run_isolated
    from archlint.target import parse_target

    overrides = {key: value for key, value in options.items() if value is not None}
    parse_target(target)
    settings = config_for(target, config_path, isolated).settings_for(target, overrides)
    if settings.mode == "decode":
        raise ArchlintError("archlint profile measures train and infer steps: use "
                            "--mode train or --mode infer")
    seconds = _timeout(timeout, config_path, isolated, target)
    out_dir = checked_directory(out_dir, "--out")

    def measurement(reporter) -> tuple[str, int]:  # noqa: ANN001 - runs in the child
        import json

        from archlint.profile import format_profile, run_profile

        _quiet_library_warnings()
        reporter.target(target)
        report = run_profile(target, settings, out_dir,
                             echo=lambda text: print(text, file=sys.stderr, flush=True))
        text = (json.dumps(report.to_dict(), indent=2) if output_format == "json"
                else format_profile(report)) + "\n"
        measured = all(row.status == "measured" for row in report.rows)
        return text, EXIT_CLEAN if measured else EXIT_FINDINGS

    outcome = run_isolated(measurement, seconds, debug)
    if outcome.error is not None:
        if outcome.debug:
            click.echo(outcome.debug.rstrip(), err=True)
        raise ArchlintError(outcome.error)
    click.echo(outcome.text, nl=False)
    return outcome.code


@main.command()
@click.argument("target")
@click.option("--seq-len", "seq_len", help="Target length: 4096, 32k.")
@click.option("--span", help="Dependency distance the model must cover (e.g. 8k).")
@click.option("--memory", help="Memory budget: 24GB, 80GiB, or a device name.")
@click.option("--latency", "latency_ms", help="Latency budget: 50ms, 0.2s (a number is ms).")
@click.option("--max-serial-steps", help="Budget of ordered steps per forward.")
@click.option("--batch", help="Batch size (default 1).")
@click.option("--dtype", help="float32 | bfloat16 | float16.")
@click.option("--mode", help="train | infer.")
@click.option("--optimizer", help="adam | adamw | sgd | none (train mode).")
@click.option("--causal/--no-causal", default=None, help="Declare the model (non-)causal.")
@click.option("--no-dynamic", "dynamic", flag_value=False, default=None,
              help="Skip the gradient probes.")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(["text", "json"]), help="Output format.")
@click.option("--output", "-o", metavar="FILE",
              help="Write the advice to this file instead of stdout.")
@click.option("--plot", "plot_dir", metavar="DIR",
              help="Write the changes on the two axes, the cost curves and an HTML page "
                   "to DIR (archlint[plot]).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Use this pyproject.toml instead of the nearest one.")
@click.option("--isolated", is_flag=True, help="Ignore every configuration file.")
@click.option("--timeout", help="Seconds the advice may take (default 300; 90s, 5min).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def advise(target: str, output_format: str, output: str | None, plot_dir: str | None,
           config_path: str | None, isolated: bool, timeout: str | None, debug: bool,
           **options: Any) -> None:
    """Rank concrete changes by what they do to reach and cost at --seq-len.

    Starts from the model's R, L(span), S, peak memory and FLOPs, and evaluates each
    change (fused attention, bf16, checkpointing, windowed or linear attention, a TCN
    for a recurrence, downsampling, a smaller batch or n) with archlint's own analyses.
    Needs a goal: --span, --memory, or both.
    """
    _guarded(_advise, debug, target, output_format, output, config_path, isolated, timeout,
             debug, options, plot_dir)


def _advise(target: str, output_format: str, output: str | None, config_path: str | None,
            isolated: bool, timeout: str | None, debug: bool, options: dict[str, Any],
            plot_dir: str | None = None) -> int:
    from archlint.config import config_for
    from archlint.outputs import checked_output, write_report
    from archlint.sandbox import run_isolated
    from archlint.target import parse_target

    overrides = {key: value for key, value in options.items() if value is not None}
    overrides["baseline"] = ""                  # advice compares with no baseline
    parse_target(target)
    settings = config_for(target, config_path, isolated).settings_for(target, overrides)
    if settings.span is None and settings.memory is None:
        raise ArchlintError("archlint advise needs a goal: --span (the dependency distance "
                            "to reach) and/or --memory (the budget to fit), e.g. "
                            "--span 8k --memory 24GB")
    if settings.mode == "decode":
        raise ArchlintError("archlint advise weighs train and infer steps: use --mode train "
                            "or --mode infer")
    if len(settings.seq_len) > 1:
        raise ArchlintError("archlint advise takes one --seq-len (the length to advise for)")
    seconds = _timeout(timeout, config_path, isolated, target)
    output = checked_output(output, [target])
    plot_dir = _checked_plot_dir(plot_dir)

    def advice(reporter) -> tuple[str, int]:  # noqa: ANN001 - runs in the child
        import json

        import archlint.api  # noqa: F401 - importing torch is not the model's time
        from archlint.advise import advise as advise_report
        from archlint.session import CheckSession

        _quiet_library_warnings()
        reporter.target(target)
        session = CheckSession(overrides=overrides, config_path=config_path,
                               isolated=isolated)
        report = session.analyze(target)
        result = advise_report(report)
        if plot_dir is not None:
            _write_plots([report], plot_dir, [result])
        text = (json.dumps(result.to_dict(), indent=2, default=str) + "\n"
                if output_format == "json" else result.render_text())
        return text, EXIT_CLEAN

    outcome = run_isolated(advice, seconds, debug)
    if outcome.error is not None:
        if outcome.debug:
            click.echo(outcome.debug.rstrip(), err=True)
        raise ArchlintError(outcome.error)
    if output is None:
        click.echo(outcome.text, nl=False)
    else:
        write_report(output, outcome.text)
    return outcome.code


@main.command("rules")
def rules_command() -> None:
    """List every rule: code, name, severity, summary."""
    from tabulate import tabulate

    from archlint.ruleinfo import rule_infos

    rows = [(r.code, r.name, r.severity, r.summary) for r in rule_infos()]
    click.echo(tabulate(rows, headers=("code", "name", "severity", "summary")))


@main.command()
@click.argument("code")
def explain(code: str) -> None:
    """Print a rule's documentation."""
    from archlint.ruleinfo import info_by_code

    rule = info_by_code(code)
    if rule is None:
        click.echo(f"archlint: error: unknown rule {code!r}; see `archlint rules`", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"{rule.code} {rule.name} ({rule.severity})\n")
    click.echo(rule.doc)
