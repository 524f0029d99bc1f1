"""AL503: the receptive field, dependency path or serial steps differ from the baseline."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class BaselineReachChanged(Rule):
    """The receptive field R, dependency path L(span) or serial steps S(n) changed.

    ## What it does
    With ``--baseline FILE``, compares the model's receptive field R and serial steps
    S(n) (as expressions in n, so a different ``--seq-len`` is not a change), and the
    dependency path L(span) at the same span, with the stored entry. Any difference is
    reported, whichever way it went.

    ## Why is this bad?
    How far information travels is the model's design, not a cost to trim: a receptive
    field that shrank below the span, a recurrence that added n serial steps, or a path
    that grew by a factor of the depth usually come from an accident (a mask changed, a
    dilation reset, a layer reordered), and nothing else in the report says "this moved".

    ## Example
    The last two dilated layers were removed: ``receptive field R: 31 -> 7``.

    ## Fix
    Restore the layers, or, when the change is meant, write the baseline again
    (``archlint check --write-baseline FILE``) and commit it with the change.
    """

    code = "AL503"
    name = "baseline-reach-changed"
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
        for move in diff.regressions_of("receptive_field", "serial_steps", "dependency_path"):
            yield self.finding(move.text,
                               fix=f"restore it, or accept the change: `archlint check "
                               f"--write-baseline {diff.path}`")
