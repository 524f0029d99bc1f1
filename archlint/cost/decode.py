"""Decode mode: one generated token with a KV cache of n positions.

Stock models carry no cache interface archlint could drive, so the step is composed:
a one-token forward on fake tensors (weights and per-token activations), plus, for
every attention layer, the cache of keys and values of n positions and the row of n
scores the new token computes against it::

    KV cache = Σ_layers 2 · B · min(n, window) · kv_heads · head_dim · bytes(dtype)

Linear attention and recurrences keep a state that does not grow with n: no cache.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from archlint.graph import Layer, ModelGraph
from archlint.kinds import LayerKind

if TYPE_CHECKING:
    from archlint.cost.predict import CostModel, Prediction

#: bytes per cached element: autocast computes k and v in the low-precision dtype
ELEMENT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: attention logits are computed in float32 for the softmax
SCORE_BYTES = 4


def cache_layers(graph: ModelGraph) -> list[tuple[Layer, int, int, int | None]]:
    """Attention layers that cache keys/values: (layer, heads, kv width, window).

    A layer nested in another attention layer (an ``nn.MultiheadAttention`` inside a
    classified encoder layer) is counted once, at the innermost level.
    """
    layers = [layer for layer in graph.layers_of(LayerKind.ATTENTION)
              if layer.params.get("implementation") != "linear"]
    names = [layer.name.partition(":")[0] for layer in layers]
    found = []
    for layer, name in zip(layers, names):
        if any(other != name and other.startswith(name + ".") for other in names):
            continue
        heads, head_dim = layer.params.get("heads"), layer.params.get("head_dim")
        if not heads or not head_dim:
            continue
        kv_heads = layer.params.get("kv_heads") or heads
        found.append((layer, int(heads), int(kv_heads) * int(head_dim), layer.params.get("window")))
    return found


def kv_cache_bytes(graph: ModelGraph, seq_len: int, batch: int, dtype: str) -> dict[str, int]:
    """Cache bytes per attention layer name at context length ``seq_len``."""
    size = ELEMENT_BYTES[dtype]
    result = {}
    for layer, _, width, window in cache_layers(graph):
        positions = min(seq_len, window) if window else seq_len
        result[layer.name] = 2 * batch * positions * width * size
    return result


def decode_prediction(model: CostModel, seq_len: int) -> Prediction:
    """Peak memory and FLOPs of generating the token at position ``seq_len``."""
    from archlint.cost.memory import MemoryBreakdown

    settings = model.settings
    step = model.predict(max(1, model.graph.input_spec.min_len), "infer")
    caches = kv_cache_bytes(model.graph, seq_len, settings.batch, settings.dtype)
    rows, attention_flops = 0, 0
    for _, heads, width, window in cache_layers(model.graph):
        positions = min(seq_len, window) if window else seq_len
        rows = max(rows, settings.batch * heads * positions * SCORE_BYTES)
        attention_flops += 4 * settings.batch * positions * width      # q·Kᵀ and a·V
    parts = dict(step.memory.parts)
    parts["kv_cache"] = parts.get("kv_cache", 0) + sum(caches.values())
    parts["attention_scores"] = parts.get("attention_scores", 0) + rows
    owners = {key: dict(value) for key, value in step.memory.owners.items()}
    owners["kv_cache"] = {name.partition(":")[0]: nbytes for name, nbytes in caches.items()}
    memory = MemoryBreakdown(peak=step.peak + sum(caches.values()) + rows, parts=parts,
                             phase="decode", owners=owners)
    return replace(step, seq_len=seq_len, mode="decode", memory=memory,
                   phases={"decode:": memory},
                   flops_forward=step.flops_forward + attention_flops,
                   attention_flops=step.attention_flops + attention_flops,
                   method="one-token forward on fake tensors + KV cache formula")
