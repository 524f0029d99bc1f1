"""AL301: more serial steps than the latency or step budget allows."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class SerialStepsOverBudget(Rule):
    """Serial steps exceed the step budget or the latency budget.

    ## What it does
    Counts the ordered steps on the critical path of one forward pass, S(n): one per
    attention, convolution or pooling layer on the longest chain, n per stacked
    recurrent layer. Reports when S(n) exceeds ``--max-serial-steps``, or when S(n)
    times a per-step cost (option ``ms_per_step``, default 0.2 ms, selection guide) exceeds
    ``--latency``.

    ## Why is this bad?
    Serial steps cannot be parallelized away: more GPUs raise the batch, not the speed
    of one sequence. At n = 1024 an RNN takes 1024 ordered steps (~205 ms at 0.2 ms a
    step) where a 6-layer Transformer takes 6 (selection guide).

    ## Example
    ``nn.LSTM`` at ``--seq-len 1024 --latency 200ms``:
    ``1024 serial steps ≈ 205 ms at 0.2 ms/step > 200 ms``.

    ## Fix
    Replace the recurrence with attention or a TCN (steps = layers), or run it over
    shorter chunks in parallel.
    """

    code = "AL301"
    name = "serial-steps-over-budget"
    severity = "warning"
    options = {"ms_per_step": 0.2}
    flagged = [("fixtures/seed000_lstm.py", {"seq_len": "1024", "latency_ms": 200}),
               ("fixtures/lstm_model.py", {"seq_len": "1024", "max_serial_steps": 1000})]
    clean = [("fixtures/gpt_sdpa.py", {"seq_len": "1024", "latency_ms": 200}),
             ("fixtures/seed000_lstm.py", {"seq_len": "512", "latency_ms": 200})]

    def check(self, report) -> Iterable[Finding]:
        reach = report.reach
        if reach is None:
            return
        n = self.settings.target_len
        steps = int(reach.serial_steps.at(n))
        row = _longest(reach)
        budget = self.settings.max_serial_steps
        fix = ("replace the recurrence with attention or a TCN (serial steps = layers), or "
               "process the sequence in shorter chunks in parallel")
        if budget is not None and steps > budget:
            yield self.finding(f"{steps} serial steps (S = {reach.serial_steps}) at n={n} > "
                               f"budget {budget}", fix=fix,
                               layer=row.layer if row else None,
                               location=row.location if row else None)
        latency = self.settings.latency_ms
        per_step = float(self.option("ms_per_step"))
        if latency is not None and steps * per_step > latency:
            yield self.finding(f"{steps} serial steps ≈ {_milliseconds(steps * per_step)} ms at "
                               f"{per_step:g} ms/step > {latency:g} ms", fix=fix,
                               layer=row.layer if row else None,
                               location=row.location if row else None)


def _longest(reach):
    """The layer that contributes the most steps: the first recurrence, else the last."""
    if reach.recurrences:
        return reach.recurrences[0]
    return reach.layers[-1] if reach.layers else None


def _milliseconds(value: float) -> str:
    """Three significant figures (0.246, 12.8), whole milliseconds from 100 ms up (205,
    20480: never an exponent)."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"

