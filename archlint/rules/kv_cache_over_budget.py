"""AL203: in decode mode the KV cache at the target context does not fit the budget."""

from __future__ import annotations

from collections.abc import Iterable

from archlint.cost.decode import cache_layers
from archlint.cost.locate import cost_of
from archlint.findings import Finding
from archlint.rules import Rule
from archlint.units import format_bytes


class KVCacheOverBudget(Rule):
    """KV cache at the target context length does not fit the memory budget.

    ## What it does
    With ``--mode decode``, predicts the memory of generating the token at position n:
    weights, one token's activations, and the cache of keys and values of n positions
    for every attention layer, 2·B·n·kv_heads·head_dim·bytes each. Reports when that
    exceeds ``--memory`` and the cache is what does not fit.

    ## Why is this bad?
    The cache grows linearly with the context and with the batch of concurrent
    sequences; at long contexts it outgrows the weights, and generation fails (or the
    server must evict requests) once the context passes the length the finding names.

    ## Example
    A 12-layer, d=768 decoder in float32 caches 2·12·768·4 = 73.7 kB per position: at
    n=131072 that is 9.7 GB per sequence.

    ## Fix
    Grouped-query or multi-query attention (fewer KV heads), a sliding-window cache,
    an 8-bit or paged KV cache, or a shorter maximum context.
    """

    code = "AL203"
    name = "kv-cache-over-budget"
    severity = "error"
    flagged = [("fixtures/gpt_sdpa.py", {"seq_len": "1M", "memory": "256MB", "mode": "decode"})]
    clean = [("fixtures/gpt_sdpa.py", {"seq_len": "4096", "memory": "256MB", "mode": "decode"}),
             ("fixtures/gpt_sdpa.py", {"seq_len": "1M", "memory": "256MB", "mode": "infer"})]

    def check(self, report) -> Iterable[Finding]:
        cost = cost_of(report)
        if cost is None or cost.mode != "decode" or cost.budget is None or cost.target is None:
            return
        prediction = cost.target
        cache = prediction.kv_cache_bytes or prediction.memory.parts.get("kv_cache", 0)
        if prediction.peak <= cost.budget or cache == 0:
            return
        layers = cache_layers(report.graph)
        per_position = -(-cache // prediction.seq_len)
        weights = prediction.memory.parts.get("parameters", 0)
        fits = cost.curve.fits_up_to if cost.curve is not None else None
        tail = f"; the context fits up to n={fits}" if fits else ""
        yield self.finding(
            f"KV cache at n={prediction.seq_len} needs {format_bytes(cache)} "
            f"({len(layers)} attention layers, {format_bytes(per_position)} per position "
            f"at batch {cost.batch}, {cost.dtype}); with {format_bytes(weights)} of weights "
            f"one decode step needs {format_bytes(prediction.peak)} on "
            f"{cost.budget_label()}{tail}",
            fix=("use grouped-query/multi-query attention (fewer KV heads), a sliding-window "
                 "or 8-bit/paged KV cache, or cap the context"
                 + (f" at {fits}" if fits else "")),
            layer=layers[0][0] if layers else None)
