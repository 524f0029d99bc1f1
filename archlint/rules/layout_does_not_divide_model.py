"""AL208: the parallel layout splits a layer by a degree that does not divide it."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.parallel.report import ParallelReport
from archlint.rules import Rule


class LayoutDoesNotDivideModel(Rule):
    """The parallel layout splits a layer by a degree that does not divide it.

    ## What it does
    Checks ``--parallel`` against the model: tensor parallelism splits attention heads
    and the features of the Linears its plan shards, so ``tp`` must divide the head
    count and those features; context parallelism splits the sequence into ``cp``
    chunks (``2·cp`` for causal attention, whose load-balanced split gives every rank
    one early and one late chunk), so the chunk count must divide n, and a recurrence
    cannot be split along the sequence at all. Reported at the line of the layer.
    ``archlint check`` treats this as a usage error (exit 2): no per-device figure
    exists for a layout the model cannot take.

    ## Why is this bad?
    The job fails at start-up with a shape error deep inside DTensor, or, worse, a
    hand-written split silently gives ranks unequal shares.

    ## Example
    ```text
    archlint check gpt2.py --parallel tp=5
    gpt2.py:41: AL208 [error] tp=5 does not divide the 12 heads of blocks.0.attn
    ```

    ## Fix
    Use a degree from the list the finding gives (the divisors of the head count or
    features; a ``--seq-len`` divisible by the chunk count).
    """

    code = "AL208"
    name = "layout-does-not-divide-model"
    severity = "error"
    flagged = [("fixtures/gpt_sdpa.py", {"seq_len": "256", "parallel": "tp=3"}),
               ("fixtures/gpt_sdpa.py", {"seq_len": "250", "parallel": "cp=2"})]
    clean = [("fixtures/gpt_sdpa.py", {"seq_len": "256", "parallel": "tp=2"})]

    def check(self, report) -> Iterable[Finding]:
        parallel = report.parallel
        if not isinstance(parallel, ParallelReport):
            return
        for violation in parallel.plan.violations:
            yield Finding(code=self.code, rule=self.name,
                          severity=self.settings.rule_option(self.code, "severity",
                                                             self.severity),
                          message=violation.message, fix=violation.fix,
                          location=violation.location, layer=violation.layer)
