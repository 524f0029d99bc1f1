"""AL102: a dependency path through a recurrence longer than gradients survive."""

from __future__ import annotations

import math
from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class RecurrentPathTooLong(Rule):
    """Dependency path through a recurrence is longer than a gradient survives.

    ## What it does
    Finds RNN/LSTM/GRU layers (and hand-written loops over time) through which the
    shortest path between two positions ``d`` apart is ``d`` steps, and reports when that
    path, at the required span (``--span``) or across the whole sequence (``n - 1``), is
    longer than ``threshold`` steps (default 256, selection guide: "when dependency span > 256,
    RNN/LSTM often struggle"). The message estimates the gradient left after the path
    with a per-step factor ``decay`` (default 0.9: 0.9^100 = 0.000026, selection guide).

    ## Why is this bad?
    The gradient from position t to t-d is a product of d Jacobians; with a spectral
    radius below 1 it vanishes geometrically. Gates (LSTM forget bias) slow the decay but
    do not change that the path grows with d; truncated BPTT caps the learnable span at
    the truncation length.

    ## Example
    ```python
    self.lstm = nn.LSTM(16, 32, num_layers=2, batch_first=True)
    ```
    checked with ``--seq-len 4096``: a 4095-step path.

    ## Fix
    Shorten the path: attention over the recurrent states (path 1), a TCN or Transformer
    instead of the recurrence, or chunk the sequence so no dependency is longer than the
    threshold.
    """

    code = "AL102"
    name = "recurrent-path-too-long"
    severity = "warning"
    options = {"threshold": 256, "decay": 0.9}
    flagged = [("fixtures/lstm_model.py", {"seq_len": "512"}),
               ("fixtures/custom_rnn_cell.py",
                {"seq_len": "128", "rule_options": {"AL102": {"threshold": 100}}})]
    clean = [("fixtures/lstm_model.py", {"seq_len": "128"}),
             ("fixtures/gpt_sdpa.py", {"seq_len": "4096"})]

    def check(self, report) -> Iterable[Finding]:
        reach = report.reach
        if reach is None or not reach.recurrences:
            return
        threshold, decay = int(self.option("threshold")), float(self.option("decay"))
        n = self.settings.target_len
        span = self.settings.span
        if span:
            path, distance = reach.dependency_path, span - 1
        else:
            path, distance = reach.longest_path.at(n), n - 1
        if path is None or math.isinf(path) or path <= threshold:
            return
        row = reach.recurrences[0]
        remaining = decay ** path
        yield self.finding(
            f"dependency path {int(path)} steps > {threshold} through {row.name} "
            f"(distance {distance}): gradient ~ {decay:g}^{int(path)} = {remaining:.1e}",
            fix=("shorten the path: add attention over the recurrent states (path 1), use a "
                 "TCN or Transformer for this span, or chunk the sequence so dependencies "
                 f"stay under {threshold} steps"),
            layer=row.layer, location=row.location)
