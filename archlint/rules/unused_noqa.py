"""AL001: a ``# archlint: noqa`` comment that suppresses nothing."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class UnusedNoqa(Rule):
    """Suppression comment that no longer suppresses any finding.

    ## What it does
    With ``--warn-unused-noqa`` (or ``warn_unused_noqa = true`` in ``[tool.archlint]``),
    reports every ``# archlint: noqa`` comment in the model's source files that did not
    suppress a finding in this run, and for a comment with codes, which codes did not
    fire (no finding, rule not enabled, or unknown code).

    Unused suppressions are only known once every other rule has run, so
    :mod:`archlint.suppress` reports them after the rules; this class carries the code,
    name, severity and documentation, and reports nothing on its own.

    ## Why is this bad?
    A stale suppression hides the next real problem on that line: after the layer is
    fixed (say the positional table grown to the target length), a later regression of
    the same kind would pass silently.

    ## Example
    ```python
    self.pos = nn.Embedding(8192, d_model)  # archlint: noqa: AL106
    ```
    checked with ``--seq-len 4096``: the table is long enough, AL106 does not fire, the
    comment is unused.

    ## Fix
    Remove the comment, or the codes in it that no longer fire.
    """

    code = "AL001"
    name = "unused-noqa"
    severity = "warning"
    #: a 64-row table under ``# archlint: noqa: AL106``: unused at n=64, used at n=128
    flagged = [("tests/rule_cases/noqa_positions.py",
                {"seq_len": "64", "warn_unused_noqa": True})]
    clean = [("tests/rule_cases/noqa_positions.py",
              {"seq_len": "128", "warn_unused_noqa": True}),
             ("tests/rule_cases/noqa_positions.py", {"seq_len": "64"})]

    def check(self, report) -> Iterable[Finding]:
        return ()
