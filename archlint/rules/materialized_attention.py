"""AL202: attention that stores its n×n score matrix where a fused kernel would not."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.cost.locate import attention_layers, cost_of, module_of
from archlint.findings import Finding
from archlint.rules import Rule
from archlint.units import format_bytes


class MaterializedAttention(Rule):
    """Attention materializes its n×n score matrix; a fused kernel keeps memory linear.

    ## What it does
    Finds attention layers that hold B·h·n² score tensors: hand-written
    ``softmax(q @ kᵀ) @ v`` (classified ``implementation=materialized``), and any
    attention layer that owns n×n tensors at the predicted peak, such as
    ``nn.MultiheadAttention`` called with its default ``need_weights=True``. The
    message gives the bytes of scores held at the peak at the target length, which is
    what a fused kernel saves.

    The bytes are the device's: on a GPU (``--device h100-80gb``) an SDPA call runs the
    kernel CUDA would pick (flash, memory-efficient, cuDNN, or math when none of their
    constraints hold) and only the math kernel holds scores; the fix then names the
    constraints that ruled the fused kernels out. On the CPU, SDPA falls back to math
    when attention dropout is on in training.

    ## Why is this bad?
    Scores, their softmax and dropout mask are each B·h·n² elements and are kept for
    backward: memory grows with n², and at n=8192 with 12 heads one layer's fp32
    scores are 3.2 GB. ``F.scaled_dot_product_attention`` computes the same result
    blockwise (FlashAttention, memory-efficient or CPU flash kernels) and stores only
    the output and a log-sum-exp per row: O(n) memory.

    ## Example
    ```python
    att = (q @ k.transpose(-2, -1)) * self.scale
    att = att.masked_fill(self.mask[:, :, :n, :n] == 0, float("-inf"))
    y = torch.softmax(att, dim=-1) @ v
    ```

    ## Fix
    ```python
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ```
    For ``nn.MultiheadAttention`` pass ``need_weights=False`` (it then calls SDPA).
    """

    code = "AL202"
    name = "materialized-attention"
    severity = "warning"
    options = {"min_share": 0.05}
    flagged = [("fixtures/gpt_materialized.py", {"seq_len": "256"}),
               ("fixtures/conv_transformer.py", {"seq_len": "1024"})]
    clean = [("fixtures/gpt_sdpa.py", {"seq_len": "1024"}),
             ("fixtures/linear_attention.py", {"seq_len": "1024"})]

    def check(self, report) -> Iterable[Finding]:
        cost = cost_of(report)
        prediction = cost.target if cost is not None else None
        if prediction is None:
            return
        owners = prediction.memory.owners.get("attention_scores", {})
        n, peak = prediction.seq_len, prediction.peak
        for layer in attention_layers(report.graph):
            module = module_of(layer)
            held = sum(nbytes for owner, nbytes in owners.items()
                       if owner == module or owner.startswith(module + "."))
            materialized = layer.params.get("implementation") == "materialized"
            if not materialized and held < self.option("min_share") * peak:
                continue
            heads = layer.params.get("heads") or 1
            per_copy = cost.batch * heads * n * n * 4
            saving = (f"saves {format_bytes(held)} of the {format_bytes(peak)} peak"
                      if held else f"each fp32 copy is {format_bytes(per_copy)}")
            yield self.finding(
                f"{layer.name} materializes its (B, h, n, n) attention scores: at n={n} "
                f"{format_bytes(held)} of scores are held at the peak; a fused kernel "
                f"keeps them O(n) and {saving}",
                fix=_fix(layer, _math_choice(prediction, module), cost.device),
                layer=layer)


def _math_choice(prediction, module: str):
    """The device's kernel choice that fell back to math inside ``module``, if any."""
    for choice in prediction.kernels:
        inside = choice.module == module or choice.module.startswith(module + ".")
        if inside and choice.backend == "math":
            return choice
    return None


def _fix(layer, math_choice, device: str | None) -> str:
    if math_choice is not None:
        # a GPU: SDPA is called, and the device's kernel choice says why it is math
        change = math_choice.remedy or ("no single change of dtype, mask, dropout or head "
                                        "dim gets a fused kernel on this device")
        return f"on {device} SDPA runs its math kernel here ({math_choice.reason}); {change}"
    if layer.params.get("implementation") == "materialized":
        return ("call F.scaled_dot_product_attention(q, k, v, ...) instead of "
                "softmax(q @ k^T) @ v (for nn.MultiheadAttention pass need_weights=False)")
    # the code already calls the fused kernel; the CPU kernel falls back to the math path
    # (n x n scores) when attention dropout is active in training (measured: dropout=0.0
    # holds no scores at all)
    return ("the fused kernel falls back to materialized scores here: set the attention "
            "dropout to 0.0 (e.g. nn.TransformerEncoderLayer(..., dropout=0.0) or "
            "dropout_p=0.0), or regularize elsewhere")
