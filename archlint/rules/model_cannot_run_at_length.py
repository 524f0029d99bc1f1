"""AL110: the model's own checks stop it at the target sequence length."""

from __future__ import annotations

import re
from collections.abc import Iterable

from archlint.findings import Finding
from archlint.limits import short_tables, step_failures
from archlint.rules import Rule


class ModelCannotRunAtLength(Rule):
    """The model raises an error of its own at the target sequence length.

    ## What it does
    Runs one step of the model at ``--seq-len`` on fake tensors (the cost analysis does
    this anyway: nothing is allocated) and reports the failure when it comes from the
    model itself: a length check (``ValueError: Sequence Length: 4096 has to be less or
    equal than config.max_position_embeddings 2048``) or a shape that stops fitting at
    that length (``Attempting to broadcast a dimension of length 2048``). The message
    quotes the exception's own words and the longest length that ran. A positional
    table too short for n is reported by AL106 at the table instead.

    ## Why is this bad?
    The job starts, loads its data, and dies at the first batch of the target length.
    The exception names the limit, but only once the run is already paid for.

    ## Example
    ```python
    if input_ids.shape[1] > self.config.max_position_embeddings:
        raise ValueError(f"Sequence Length: {n} has to be less or equal than ...")
    ```
    checked with ``--seq-len 4096`` and ``max_position_embeddings=2048``.

    ## Fix
    Raise the configured limit the exception names (and whatever table or cache it
    guards), train at a length the model accepts, or split the sequence into windows
    the model can take.
    """

    code = "AL110"
    name = "model-cannot-run-at-length"
    severity = "error"
    flagged = [("fixtures/length_check.py", {"seq_len": "4096"})]
    clean = [("fixtures/length_check.py", {"seq_len": "1024"})]

    def check(self, report) -> Iterable[Finding]:
        failures = [f for f in step_failures(report)
                    if not short_tables(report.graph, f.seq_len)]
        if not failures:
            return
        first = failures[0]
        ran = _longest_that_ran(report, first.seq_len)
        also = [f.seq_len for f in failures[1:]]
        message = f"the model cannot run at n={first.seq_len}: {first} ({ran})"
        if also:
            message += f"; it fails at n={', '.join(map(str, also))} too"
        yield self.finding(
            message,
            fix=(f"raise the limit the error names to at least {first.seq_len}, or keep "
                 "the sequences below it"),
            location=report.graph.locations.get(""),
            limits=tuple(int(number) for number in re.findall(r"\b\d+\b", first.words)
                         if int(number) != first.seq_len))


def _longest_that_ran(report, seq_len: int) -> str:
    """The longest length below ``seq_len`` at which a step ran: a predicted length or
    a point of the cost curve, else the length the model was traced at."""
    cost = report.cost
    lengths = [p.seq_len for p in getattr(cost, "predictions", [])]
    curve = getattr(cost, "curve", None)
    lengths += list(curve.lengths) if curve is not None else []
    ran = [n for n in lengths if n < seq_len]
    if ran:
        return f"a step ran at n={max(ran)}"
    return f"it ran at n={report.graph.trace_len}, the length it was traced at"
