"""AL302: past the crossover length, attention's n² FLOPs dominate the step."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.cost.locate import attention_layers, cost_of
from archlint.findings import Finding
from archlint.rules import Rule
from archlint.units import format_count


class AttentionDominatedCompute(Rule):
    """Attention's quadratic FLOPs dominate the step at the target length.

    ## What it does
    Splits the predicted FLOPs of one step into the attention part that grows as n²
    (QKᵀ and A·V: 4·n²·d per layer forward) and everything else (projections, FFN:
    linear in n), and reports when the target length is past the crossover where the
    first overtakes the second. For a standard block the crossover is n = 6·d (the
    seed's rule of thumb n > 2·d_ff compares QKᵀ alone with the FFN).

    ## Why is this bad?
    Past the crossover, doubling n quadruples the dominant cost: throughput per token
    falls linearly with n and a longer context buys less than it costs.

    ## Example
    A GPT-2 small (d=768) at n=16384: attention is about 70% of the FLOPs of the step.

    ## Fix
    Sliding-window or local attention (Longformer, Mistral), block-sparse attention
    (BigBird), linear attention (Katharopoulos et al., Performer), a state-space layer
    (Mamba, S4), or chunk the sequence.
    """

    code = "AL302"
    name = "attention-dominated-compute"
    severity = "warning"
    flagged = [("fixtures/gpt_sdpa.py", {"seq_len": "4096"})]
    clean = [("fixtures/gpt_sdpa.py", {"seq_len": "128"}),
             ("fixtures/linear_attention.py", {"seq_len": "4096"})]

    def check(self, report) -> Iterable[Finding]:
        cost = cost_of(report)
        if cost is None or cost.curve is None or cost.target is None:
            return
        crossover = cost.curve.crossover
        prediction = cost.target
        if crossover is None or prediction.seq_len <= crossover or not prediction.flops:
            return
        share = prediction.attention_flops / prediction.flops
        layers = attention_layers(report.graph)
        yield self.finding(
            f"attention is {share:.0%} of the {format_count(prediction.flops)}FLOPs of "
            f"{'an' if cost.mode[0] in 'aeiou' else 'a'} {cost.mode} step at "
            f"n={prediction.seq_len}: past n≈{crossover} its n² score "
            f"FLOPs outgrow every per-position FLOP of the model",
            fix=("use sliding-window/local or block-sparse attention, linear attention or a "
                 "state-space layer, or chunk the sequence below n≈" + str(crossover)),
            layer=layers[0] if layers else None)
