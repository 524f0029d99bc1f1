"""AL502: peak memory or FLOPs above the stored baseline by more than the tolerance."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class BaselineCostRegression(Rule):
    """Peak memory or FLOPs of a step rose above the baseline by more than the tolerance.

    ## What it does
    With ``--baseline FILE``, compares the predicted peak memory and FLOPs of one step at
    every length that both this run and the stored entry have (same mode, dtype, batch
    and optimizer). A rise by more than ``baseline_tolerance`` (a fraction, default
    0.02 = 2%, in ``[tool.archlint]``) is reported, one finding per quantity and length;
    a fall by more than the tolerance is listed as an improvement.

    ## Why is this bad?
    Memory and compute creep in one small change at a time (a wider MLP, an attention
    layer that stopped using the fused kernel, float32 where bfloat16 was meant) until
    the model no longer fits the card; a per-change comparison catches each step.

    ## Example
    ``d_model`` doubled from 256 to 512: ``peak memory at n=4096: 41.2 MB -> 115.6 MB
    (+180.6%, tolerance 2%)``.

    ## Fix
    Undo the increase, or accept it: write the baseline again
    (``archlint check --write-baseline FILE``) and commit it with the change.
    """

    code = "AL502"
    name = "baseline-cost-regression"
    severity = "error"
    #: the baseline stores R = 15, S = 7, 100.0 kB and 2.0 M FLOPs and no finding at n=256;
    #: at n=512 the AL101 this span gives, R = 17, S = 8 and figures far above today's
    flagged = [("fixtures/cnn_stack_k3.py", {"seq_len": "256", "span": 200,
                                             "baseline": "tests/rule_cases/baseline.json"})]
    clean = [("fixtures/cnn_stack_k3.py", {"seq_len": "512", "span": 200,
                                           "baseline": "tests/rule_cases/baseline.json"}),
             ("fixtures/cnn_stack_k3.py", {"seq_len": "256", "span": 200})]

    def check(self, report) -> Iterable[Finding]:
        diff = getattr(report, "baseline", None)
        if diff is None:
            return
        for move in diff.regressions_of("peak_bytes", "flops"):
            yield self.finding(move.text,
                               fix=f"shrink it back, or accept it: `archlint check "
                               f"--write-baseline {diff.path}`")
