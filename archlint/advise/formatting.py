"""Text of ``archlint advise``: the position, a ranked table, then each change in full.

The table fits 80 columns; each change's ``file:line`` lines stay whole for editors.
"""

from __future__ import annotations

import math

from tabulate import tabulate

from archlint.advise.position import Standing
from archlint.advise.suggestion import ESTIMATED, Suggestion
from archlint.units import format_bytes, format_count

_SHORT_METHOD = {ESTIMATED: "estimated"}


def render_text(advice) -> str:  # noqa: ANN001 - AdviceReport
    goals, now = advice.goals, advice.position
    settings = advice.settings
    lines = [f"Advice for {advice.model.name} at n={goals.seq_len} ({settings.mode}, "
             f"batch {settings.batch}, {settings.dtype})"]
    wanted = []
    if goals.budget is not None:
        wanted.append(f"fit {goals.budget_label}")
    if goals.span is not None:
        wanted.append(f"reach span {goals.span} (L <= {goals.max_path} hops)")
    if goals.latency_ms is not None:
        wanted.append(f"latency {goals.latency_ms:g} ms at {goals.ms_per_step:g} ms "
                      "per serial step")
    if goals.max_serial_steps is not None:
        wanted.append(f"at most {goals.max_serial_steps} serial steps")
    lines.append("  goals: " + "; ".join(wanted))
    lines.append("  now:   " + now.summary())
    lines.append("         " + verdict(now))
    for finding in advice.blockers:
        lines.append(f"  blocker: {finding.location}: {finding.code} {finding.message}")
    if advice.already:
        lines.append("  already has: " + "; ".join(advice.already))
    for reason in advice.ruled_out:
        lines.append(f"  ruled out: {reason}")
    lines.append("")
    if not advice.suggestions:
        lines.append("No change to suggest.")
        return "\n".join(lines) + "\n"
    rows = []
    for index, suggestion in enumerate(advice.suggestions, 1):
        s = suggestion.standing
        if s is None:
            rows.append([index, suggestion.title, "-", "-", "-", "-", "-", "not evaluated",
                         _SHORT_METHOD.get(suggestion.method, suggestion.method)])
            continue
        rows.append([index, suggestion.title, format_bytes(s.peak), format_count(s.flops),
                     _short_field(s), _hops(s.dependency_path), s.serial_steps,
                     _flags(s), _SHORT_METHOD.get(suggestion.method, suggestion.method)])
    lines.append(tabulate(rows, headers=("#", "change", "peak", "FLOPs", "R", "L", "S",
                                         "verdict", "method"),
                          tablefmt="simple", disable_numparse=True,
                          maxcolwidths=[None, 24, None, None, 10, None, None, 12, None]))
    for index, suggestion in enumerate(advice.suggestions, 1):
        lines.append("")
        lines.extend(_detail(index, suggestion, goals))
    return "\n".join(lines) + "\n"


def verdict(standing: Standing) -> str:
    parts = []
    if standing.fits is not None:
        parts.append("fits" if standing.fits else "does NOT fit")
    if standing.reaches is not None:
        parts.append("reaches the span" if standing.reaches else "does NOT reach the span")
    if standing.on_time is not None:
        parts.append("on time" if standing.on_time else "too many serial steps")
    return ", ".join(parts) or "no goal given"


def _flags(standing: Standing) -> str:
    parts = []
    if standing.fits is not None:
        parts.append("fits" if standing.fits else "OVER")
    if standing.reaches is not None:
        parts.append("reaches" if standing.reaches else "SHORT")
    if standing.on_time is not None:
        parts.append("on time" if standing.on_time else "SLOW")
    return " ".join(parts) or "-"


def _short_field(standing: Standing) -> str:
    return standing.receptive_field.split(" (")[0]


def _hops(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else str(int(value))


def suggestion_batch(suggestion: Suggestion) -> int:
    """The batch the change was evaluated at when it is not the run's (a smaller batch)."""
    return suggestion.details.get("batch_before", suggestion.standing.batch)


def _detail(index: int, suggestion: Suggestion, goals) -> list[str]:  # noqa: ANN001
    lines = [f"{index}. {suggestion.title}"]
    lines.append(f"   change: {suggestion.change}")
    for site in suggestion.where:
        where = f"{site.location}: " if site.location is not None else ""
        lines.append(f"   {where}{site.name}")
    lines.append(f"   method: {suggestion.method} ({suggestion.method_detail})")
    if suggestion.standing is None:
        lines.append(f"   not evaluated: {suggestion.error}")
    else:
        s = suggestion.standing
        lines.append(f"   after: {s.summary()}"
                     + (f" at n={s.seq_len}" if s.seq_len != goals.seq_len else "")
                     + (f", batch {s.batch}" if s.batch != suggestion_batch(suggestion) else ""))
        lines.append(f"          {verdict(s)}"
                     + (f" (≈{s.latency_ms(goals):.0f} ms)" if s.on_time is not None else ""))
    for note in suggestion.notes:
        lines.append(f"   note: {note}")
    return lines
