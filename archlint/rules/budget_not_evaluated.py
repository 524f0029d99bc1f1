"""AL002: a memory budget was set, but the cost of a step could not be predicted."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.cost.locate import cost_of
from archlint.findings import Finding
from archlint.rules import Rule
from archlint.units import format_bytes


class BudgetNotEvaluated(Rule):
    """Memory budget that could not be checked: the cost of a step was not predicted.

    ## What it does
    With ``--memory`` (or ``memory``/``device`` in ``[tool.archlint]``), reports every
    checked length at which the cost analysis could not predict the step — the model
    could not run on fake tensors there (a forward that reads tensor values with
    ``.item()`` or branches on them, an op without a fake implementation, user code that
    failed at that length) — with the reason the cost section gives.

    ## Why is this bad?
    A budget that was never compared is not a budget that was met. Without this finding
    such a run ends with "no findings" and exit code 0, and a pre-commit hook or CI job
    passes a model whose memory nobody checked.

    ## Example
    ```python
    def forward(self, x):
        if x.sum().item() > 0:          # a fake tensor has no value to compare
            return self.proj(x)
        return self.proj(x) * 2
    ```
    checked with ``--memory 1MB``: the step fails on fake tensors
    (``DataDependentOutputException``), so the 1 MB budget is not checked.

    ## Fix
    Make the forward's control flow independent of tensor values (``torch.where``
    instead of ``if x.item()``), or measure the step for real at a short length with
    ``archlint profile``; ``ignore = ["AL002"]`` accepts an unchecked budget knowingly.
    """

    code = "AL002"
    name = "budget-not-evaluated"
    severity = "error"
    flagged = [("tests/hostile/data_dependent_forward.py",
                {"seq_len": "2k", "memory": "1MB", "dynamic": False})]
    clean = [("tests/hostile/data_dependent_forward.py", {"seq_len": "2k", "dynamic": False}),
             ("fixtures/gpt_sdpa.py", {"seq_len": "1k", "memory": "16GB", "dynamic": False})]

    def check(self, report) -> Iterable[Finding]:
        if self.settings.memory is None:
            return
        cost = cost_of(report)
        failures = cost.failures if cost is not None else {}
        location = report.graph.locations.get("")
        for seq_len in self.settings.seq_len:
            if cost is not None and seq_len not in failures:
                continue
            reason = failures.get(seq_len, "the cost analysis did not run")
            yield self.finding(
                f"memory budget {format_bytes(self.settings.memory)} not checked at "
                f"n={seq_len}: {reason}",
                fix="make the forward's control flow independent of tensor values (no "
                    "`.item()`/`if tensor` on the path), or measure it with `archlint "
                    "profile` at a short length",
                location=location)
