"""AL104: a model meant to be causal whose outputs read the future."""

from __future__ import annotations

import math
from collections.abc import Iterable

from archlint.findings import Finding
from archlint.rules import Rule


class CausalityLeak(Rule):
    """Model meant to be causal lets future positions into earlier outputs.

    ## What it does
    A model is meant to be causal when it has causal attention, causal convolutions or
    prefix scans, or when ``--causal`` says so. The rule reports when an output position
    t nevertheless reads an input after t, and names the first layer on the path that
    lets the future in. When the output length differs from the input length (a conv
    padded on both sides and never trimmed), the output is also checked aligned at its
    end, the way ``out[..., -n:]`` lines it up with targets.

    ## Why is this bad?
    A next-step predictor that sees the future trains to a low loss by copying it and is
    useless at inference, where the future is not there. The symptom appears only after
    training.

    ## Example
    ```python
    nn.Conv1d(c, c, k, padding=(k - 1) * d, dilation=d)   # "causal" TCN, no chomp
    ```
    The output is n + (k-1)*d long; aligned at the end, output t reads t + (k-1)*d.

    ## Fix
    Pad only on the left (``F.pad(x, ((k-1)*d, 0))`` and ``padding=0``) or trim the
    last ``(k-1)*d`` outputs (``Chomp1d``); give attention ``is_causal=True`` or a causal
    mask; use a unidirectional recurrence.
    """

    code = "AL104"
    name = "causality-leak"
    severity = "error"
    flagged = [("fixtures/tcn_seed.py", {}),
               ("fixtures/cnn_stack_k3.py", {"causal": True})]
    clean = [("fixtures/tcn_causal.py", {}), ("fixtures/gpt_sdpa.py", {}),
             ("fixtures/cnn_stack_k3.py", {})]

    def check(self, report) -> Iterable[Finding]:
        reach = report.reach
        if reach is None or not reach.meant_causal or reach.causal is not False:
            return
        c = reach.causality
        leak = reach.leak_layer
        where = f"{leak.name} lets the future in: " if leak else ""
        why = f" (meant to be causal: {reach.meant_causal_because})"
        if c is not None and c.by_index:
            message = (f"{where}output length {reach.output_length} differs from the input "
                       f"length n; aligned at the end, output t reads up to t+"
                       f"{_num(c.ahead_by_end)}{why}")
        else:
            ahead = c.ahead_by_index if c is not None else reach.probe.ahead
            message = f"{where}output t reads inputs up to t+{_num(ahead)}{why}"
        yield self.finding(message, fix=_fix(leak), layer=leak.layer if leak else None,
                           location=leak.location if leak else None)


def _fix(leak) -> str:
    kind = leak.kind if leak else ""
    if kind in ("conv", "pool"):
        return ("pad only on the left (F.pad(x, ((k-1)*d, 0)) with padding=0) or trim the "
                "last (k-1)*d outputs after the conv (Chomp1d)")
    if kind == "attention":
        return "give the attention is_causal=True or a lower-triangular mask"
    if kind == "recurrence":
        return "use a unidirectional recurrence (bidirectional=False)"
    return "remove the operation that reads later positions, or mask it causally"


def _num(value: float) -> str:
    return "n" if math.isinf(value) else str(int(value))
