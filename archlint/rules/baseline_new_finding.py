"""AL501: a finding the stored baseline does not have."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class BaselineNewFinding(Rule):
    """A finding that is not in the baseline: a regression since it was written.

    ## What it does
    With ``--baseline FILE`` (or ``baseline = "FILE"`` in ``[tool.archlint]``), compares
    the findings of this run with the ones stored for the same model and target length
    by ``--write-baseline FILE``. Findings are matched by rule code and layer (their
    messages may carry numbers that move with the length); each finding beyond the
    stored count of its (code, layer) is reported here, at the new finding's line.
    Stored findings that no longer fire are listed as improvements in the report.

    ## Why is this bad?
    A baseline accepts the findings a project lives with; a new one is a change that
    made the model worse on a pull request (a positional table cut short, a mask
    dropped), and it would otherwise drown among the accepted ones.

    ## Example
    The baseline stores ``AL201 memory-over-budget`` for ``models/gpt.py`` at n=4096; a
    change adds a 512-row positional table: ``new AL106 positional-table-too-short at
    models/gpt.py:23: positional table pos has 512 rows < seq_len 4096``.

    ## Fix
    Fix the new finding, or accept it: write the baseline again
    (``archlint check --write-baseline FILE``) and commit it with the change.
    """

    code = "AL501"
    name = "baseline-new-finding"
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
        for move in diff.regressions_of("finding"):
            yield self.finding(move.text, fix=_fix(diff.path),
                               location=move.finding.location, layer=None)


def _fix(path: str) -> str:
    return (f"fix it, or accept it: `archlint check --write-baseline {path}` and commit "
            "the baseline with the change")
