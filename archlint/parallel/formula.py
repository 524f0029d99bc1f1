"""The documented fallback when a layout cannot be simulated on a model.

When PyTorch's distributed stack cannot run the user's model (an op DTensor has no
sharding rule for, a module FSDP2 cannot wrap), the per-device figure is derived from
the single-device prediction of :mod:`archlint.cost` by the ZeRO and Megatron rules
(Rajbhandari et al. 2020; Shoeybi et al. 2019; Korthikanti et al. 2022):

- parameters ÷ (fsdp·tp) at ZeRO-3, ÷ tp otherwise; gradients ÷ (fsdp·tp) from ZeRO-2;
  optimizer state ÷ (fsdp·tp) from ZeRO-1;
- activations, attention scores and workspace ÷ (tp·cp): each rank holds its share of
  the hidden width and of the sequence;
- no gathered-parameter or communication buffers (a lower bound);
- under ``--offload`` the optimizer state (and at ZeRO-3 the parameter and gradient
  shards) is host memory, not the device's.

Every step it produces is marked ``formula`` with the reason the simulation failed.
"""

from __future__ import annotations

from typing import Any

from archlint.parallel.layout import Layout
from archlint.parallel.simulate import DeviceStep
from archlint.parallel.tracker import CATEGORIES

_COST = {"parameters": "parameters", "gradients": "gradients", "optimizer": "optimizer",
         "activations": "activations", "attention_scores": "activations",
         "workspace": "temporaries", "kv_cache": "activations"}


def formula_step(cost: Any, layout: Layout, seq_len: int, reason: str) -> DeviceStep | None:
    """Per-device figure at ``seq_len`` from the cost section; None without a prediction."""
    prediction = cost.at(seq_len) if cost is not None else None
    if prediction is None:
        return None
    shard = layout.fsdp * layout.tp
    divisors = {"parameters": shard if layout.zero == 3 else layout.tp,
                "gradients": shard if layout.zero >= 2 else layout.tp,
                "optimizer": shard,
                "activations": layout.tp * layout.cp, "temporaries": layout.tp * layout.cp}
    parts = dict.fromkeys(CATEGORIES, 0)
    for category, nbytes in prediction.memory.parts.items():
        mine = _COST.get(category)
        if mine is not None:
            parts[mine] += -(-nbytes // divisors[mine])
    state = {c: parts[c] for c in ("parameters", "gradients", "optimizer")}
    host: dict[str, int] = {}
    if layout.offload:
        offloaded = ("parameters", "gradients", "optimizer") if layout.zero == 3 \
            else ("optimizer",)
        host = {c: parts[c] for c in offloaded}
        parts.update(dict.fromkeys(offloaded, 0))
    return DeviceStep(seq_len=seq_len, peak=sum(parts.values()), parts=parts,
                      phase=prediction.memory.phase, state=state, collectives={}, host=host,
                      method=f"formula (ZeRO/Megatron; simulation failed: {reason})")
