"""Command line: ``archlint check | rules | explain``.

Exit codes: 0 clean, 1 findings at or above ``--fail-on``, 2 usage or load errors. User
errors are one line on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import click

from archlint import __version__
from archlint.errors import ArchlintError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _guarded(function: Callable[..., int], debug: bool, *args: Any) -> None:
    """Run a command body; user errors become one line and exit 2."""
    try:
        code = function(*args)
    except ArchlintError as exc:
        if debug:
            raise
        click.echo(f"archlint: error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archlint")
def main() -> None:
    """Static analysis of sequence models: reach and budget at any length."""
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


@main.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--seq-len", "seq_len", help="Target length(s): 4096, 8k, 1k,4k,16k.")
@click.option("--span", help="Dependency distance the model must cover (e.g. 512).")
@click.option("--memory", help="Memory budget: 16GB, 80GiB, or a device name.")
@click.option("--batch", type=int, help="Batch size (default 1).")
@click.option("--dtype", help="float32 | bfloat16 | float16.")
@click.option("--mode", help="train | infer | decode.")
@click.option("--optimizer", help="adam | adamw | sgd | none (train mode).")
@click.option("--latency", "latency_ms", type=float, help="Latency budget in ms.")
@click.option("--max-serial-steps", type=int, help="Budget of ordered steps per forward.")
@click.option("--causal/--no-causal", default=None, help="Declare the model (non-)causal.")
@click.option("--select", help="Rule codes or prefixes to enable (AL1,AL201).")
@click.option("--ignore", help="Rule codes or prefixes to disable.")
@click.option("--fail-on", help="Lowest severity that fails: info | warning | error.")
@click.option("--no-dynamic", "dynamic", flag_value=False, default=None,
              help="Skip the gradient probes.")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(["text", "json"]), help="Output format.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check(targets: tuple[str, ...], output_format: str, debug: bool, **options: Any) -> None:
    """Analyze model files (model.py, model.py:NAME, package.module:attr)."""
    _guarded(_check, debug, targets, output_format, options)


def _check(targets: tuple[str, ...], output_format: str, options: dict[str, Any]) -> int:
    from archlint.api import analyze
    from archlint.format import FORMATTERS
    from archlint.settings import make_settings

    settings = make_settings(**options)
    reports = [analyze(target, settings=settings) for target in targets]
    click.echo(FORMATTERS[output_format](reports), nl=False)
    failing = [f for r in reports for f in r.findings if f.at_least(settings.fail_on)]
    return EXIT_FINDINGS if failing else EXIT_CLEAN


@main.command("rules")
def rules_command() -> None:
    """List every rule: code, name, default severity, summary."""
    from tabulate import tabulate

    from archlint.rules import all_rules

    rows = [(r.code, r.name, r.severity, r.summary()) for r in all_rules()]
    click.echo(tabulate(rows, headers=("code", "name", "severity", "summary")))


@main.command()
@click.argument("code")
def explain(code: str) -> None:
    """Print a rule's documentation."""
    from archlint.rules import documentation, rule_by_code

    rule = rule_by_code(code)
    if rule is None:
        click.echo(f"archlint: error: unknown rule {code!r}; see `archlint rules`", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"{rule.code} {rule.name} ({rule.severity})\n")
    click.echo(documentation(rule))
