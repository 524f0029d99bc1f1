"""AL201: the predicted peak memory of one step exceeds the memory budget."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.cost.locate import attention_layers, cost_of, layer_for
from archlint.cost.memory import LABELS
from archlint.findings import Finding
from archlint.kinds import LayerKind
from archlint.rules import Rule
from archlint.units import format_bytes

#: how a finding names an OOM by the category that dominates the peak
_PREFIX = {"attention_scores": "attention", "activations": "activation",
           "workspace": "workspace", "parameters": "weight", "gradients": "gradient",
           "optimizer": "optimizer-state"}
_FIX = {
    "attention_scores": "use F.scaled_dot_product_attention (fused: scores never stored, "
                        "memory linear in n) or a sliding-window/linear attention; or shorten n",
    "activations": "checkpoint the blocks (torch.utils.checkpoint), train under bfloat16 "
                   "autocast, or lower the batch",
    "workspace": "lower the batch or n; fuse the largest transient (an SDPA or fused "
                 "cross-entropy instead of materialized intermediates)",
    "parameters": "keep weights in bfloat16, shard them (FSDP/ZeRO-3) or pick a larger device",
    "gradients": "shard gradients (ZeRO-2/FSDP) or keep them in bfloat16",
    "optimizer": "use an 8-bit or sharded optimizer (ZeRO-1), or SGD, or a larger device",
}


class MemoryOverBudget(Rule):
    """Peak memory of one step at the target length exceeds the memory budget.

    ## What it does
    Predicts the peak memory of one step (``--mode train``: forward, backward and an
    optimizer step with its state; ``infer``; ``decode``) at ``--seq-len`` on fake
    tensors, and compares it with ``--memory`` (a size, or a device's usable capacity).
    The message names the category that dominates the peak (attention scores,
    activations saved for backward, workspace, weights, gradients, optimizer state, KV
    cache), points at the layer that allocates most of it, and says up to which length
    the model fits. A decode step dominated by its KV cache is AL203's finding.

    ## Why is this bad?
    The job dies with an out-of-memory error after the GPU has been rented and the data
    loaded, and the usual first reflex (halving the batch) does not help when the
    dominant term is quadratic in n.

    ## Example
    ```python
    scores = (q @ k.transpose(-2, -1)) * scale      # (B, h, n, n) kept for backward
    ```
    checked with ``--seq-len 8192 --memory 16GB`` reports
    ```text
    attention OOM at n=8192 on 16.0 GB: needs 34.2 GB (attention scores 32.0 GB);
    fits up to n=5792
    ```

    ## Fix
    Act on the named term: fused attention (``F.scaled_dot_product_attention``) for
    scores, activation checkpointing or bfloat16 autocast for activations, a sharded or
    8-bit optimizer for optimizer state; or train at the length the finding says fits.
    """

    code = "AL201"
    name = "memory-over-budget"
    severity = "error"
    case_settings = {"dynamic": False}          # a training step
    flagged = [("fixtures/gpt_sdpa.py", {"seq_len": "64k", "memory": "256MB"}),
               ("fixtures/conv_transformer.py", {"seq_len": "8k", "memory": "1GB"}),
               ("fixtures/gpt_materialized.py", {"seq_len": "256", "memory": "4MB"})]
    clean = [("fixtures/gpt_sdpa.py", {"seq_len": "64k", "memory": "16GB"})]

    def check(self, report) -> Iterable[Finding]:
        cost = cost_of(report)
        if cost is None or cost.budget is None or cost.target is None:
            return
        if getattr(report, "parallel", None) is not None:
            return                                # a per-device budget: AL207 reports it
        prediction = cost.target
        if prediction.peak <= cost.budget:
            return
        category, nbytes = prediction.memory.dominant()
        if category == "kv_cache":
            return                                # AL203 kv-cache-over-budget reports it
        owner = prediction.memory.top_owner(category)
        kinds = (LayerKind.ATTENTION,) if category == "attention_scores" else ()
        layer = layer_for(report.graph, owner, kinds)
        if layer is None and category == "attention_scores":
            layer = next(iter(attention_layers(report.graph)), None)
        where = f" in {owner}" if owner else ""
        fits = cost.curve.fits_up_to if cost.curve is not None else None
        if fits is None:
            tail = ""
        elif fits == 0:
            tail = "; does not fit even at n=1"
        else:
            tail = f"; fits up to n={'' if cost.curve.fits_exact else '≥'}{fits}"
        yield self.finding(
            f"{_PREFIX[category]} OOM at n={prediction.seq_len} on {cost.budget_label()}: "
            f"needs {format_bytes(prediction.peak)} ({LABELS[category]} "
            f"{format_bytes(nbytes)}{where}){tail}",
            fix=_FIX[category] + (f", or keep n <= {fits}" if fits else ""),
            layer=layer)
