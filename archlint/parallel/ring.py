"""The key/value exchange of context parallelism, by formula (torch's ring attention).

Under ``cp`` each rank runs its n/cp positions (the simulation does so), but attention
needs every key and value. PyTorch's ``context_parallel``
(``torch.distributed.tensor.experimental``) dispatches only the CUDA attention kernels
(flash, memory-efficient, cuDNN) to ring attention, not the CPU kernel a fake CPU run
takes, so the exchange is derived from its algorithm (torch 2.13,
``_templated_ring_attention`` and its backward, default ``rotate_method`` all-gather)
and marked as formula. Per attention layer, with ``kv = B·(kv_heads/tp)·(n/cp)·e·bytes``
the bytes of one local K (or V) chunk:

- forward: K and V concatenated (2·kv) and all-gathered: ``cp·2·kv`` bytes received;
- backward: the same all-gather again, ``cp·2·kv``, and the float32 gradients of K and
  V passed on by all-to-all at each of the cp ring steps: ``cp·2·kv·4/bytes``;
- receive buffers while one layer's attention runs backward: the local concatenation
  and the gathered K/V, ``(cp + 1)·2·kv``, and the float32 dK/dV buffer sent and the one
  received, ``2·2·kv·4/bytes``; added to the device peak (an upper bound: they live
  for one layer's attention at a time, the largest layer's counted).
"""

from __future__ import annotations

from dataclasses import dataclass

from archlint.graph import ModelGraph
from archlint.kinds import LayerKind
from archlint.parallel.layout import Layout

_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class RingExchange:
    """What ring attention adds to one rank's step."""

    all_gather: int                     # bytes of gathered K/V per step, all layers
    all_to_all: int                     # bytes of dK/dV passed per step, all layers
    buffers: int                        # receive buffers live at once (one layer)
    layers: int

    def text(self) -> str:
        return (f"context parallel's key/value exchange (torch ring attention over "
                f"{self.layers} attention layer{'s' * (self.layers != 1)}: "
                f"{self.all_gather:,} bytes all-gathered, {self.all_to_all:,} all-to-all, "
                f"{self.buffers:,} bytes of receive buffers added to the peak) is by "
                "formula: torch's context_parallel dispatches only the CUDA attention "
                "kernels")


def ring_exchange(graph: ModelGraph, layout: Layout, seq_len: int, batch: int,
                  dtype: str) -> RingExchange | None:
    """The exchange of ``layout.cp`` ranks at ``seq_len``; None without cp or attention."""
    if layout.cp <= 1:
        return None
    size = _BYTES.get(dtype, 4)
    gathered = passed = buffers = layers = 0
    for layer in graph.layers_of(LayerKind.ATTENTION):
        heads, head_dim = layer.params.get("heads"), layer.params.get("head_dim")
        if not isinstance(heads, int) or not isinstance(head_dim, int):
            continue
        kv_heads = layer.params.get("kv_heads") or heads
        local_heads = max(1, int(kv_heads) // layout.tp)
        kv = batch * local_heads * (seq_len // layout.cp) * head_dim * size
        fp32 = 2 * kv * 4 // size
        gathered += 2 * layout.cp * 2 * kv
        passed += layout.cp * fp32
        buffers = max(buffers, (layout.cp + 1) * 2 * kv + 2 * fp32)
        layers += 1
    if not layers:
        return None
    return RingExchange(all_gather=gathered, all_to_all=passed, buffers=buffers,
                        layers=layers)
