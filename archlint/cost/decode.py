"""Decode mode: one generated token with a KV cache of n positions.

**Run, where the model has a cache.** A model whose ``forward`` takes
``past_key_values`` (every Hugging Face decoder, or a hand-written model with that
protocol: it returns its cache when called with ``use_cache=True`` and takes it back)
is run as a server runs it, on fake tensors: a prefill of n tokens builds the model's
own cache (``DynamicCache``, or a tuple of key/value pairs), then one token is generated
against it under the memory tracker. The KV bytes are the cache's own tensors, the peak
is the step's (with whatever the cache update allocates: ``DynamicCache`` concatenates,
so the old and the new cache of a layer are alive together), the FLOPs are the step's.

**Composed, where it has none.** Stock modules (``nn.MultiheadAttention``,
``nn.TransformerEncoder``) carry no cache interface archlint could drive, so the step is
a one-token forward on fake tensors (weights and per-token activations), plus, for every
attention layer, the cache of keys and values of n positions and the row of n scores the
new token computes against it::

    KV cache = Σ_layers 2 · B · min(n, window) · kv_heads · head_dim · bytes(dtype)

Linear attention and recurrences keep a state that does not grow with n: no cache.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

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


#: names ``forward`` takes the cache back by (transformers 4.x: past_key_values; 5.x: cache)
CACHE_ARGUMENTS = ("past_key_values", "cache")


def cache_argument(module: Any) -> str | None:
    """The parameter ``forward`` takes its KV cache by, where it also takes
    ``use_cache`` (Hugging Face's cache protocol); None for a model without one."""
    target = getattr(module, "inner", module)            # a FlatCall's model
    try:
        parameters = inspect.signature(target.forward).parameters
    except (TypeError, ValueError):
        return None
    if "use_cache" not in parameters:
        return None
    return next((name for name in CACHE_ARGUMENTS if name in parameters), None)


def has_cache_protocol(module: Any) -> bool:
    return cache_argument(module) is not None


def find_cache(output: Any) -> Any:
    """The cache a ``use_cache=True`` forward returned: an HF ``Cache`` object (it has
    ``get_seq_length``) or a legacy tuple of (key, value) tensor pairs; None if absent."""
    if isinstance(output, dict):                         # an HF ModelOutput
        items = list(output.values())
    elif isinstance(output, (tuple, list)):
        items = list(output)
    else:
        items = [getattr(output, name, None) for name in CACHE_ARGUMENTS]
    for item in items:
        if hasattr(item, "get_seq_length") or _legacy_cache(item):
            return item
    return None


def _legacy_cache(item: Any) -> bool:
    return isinstance(item, (tuple, list)) and bool(item) and all(
        isinstance(pair, (tuple, list)) and len(pair) >= 2
        and all(isinstance(t, torch.Tensor) for t in pair) for pair in item)


def cache_tensors(cache: Any, depth: int = 6) -> list[torch.Tensor]:
    """Every tensor a cache object holds (attributes, lists, tuples, dicts), once each."""
    found: dict[int, torch.Tensor] = {}

    def walk(value: Any, level: int) -> None:
        if isinstance(value, torch.Tensor):
            found.setdefault(id(value), value)
        elif level <= 0 or isinstance(value, (str, bytes, int, float, bool, type(None))):
            return
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, level - 1)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item, level - 1)
        elif hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module):
            for item in vars(value).values():
                walk(item, level - 1)
    walk(cache, depth)
    return list(found.values())


class CacheFollower(TorchDispatchMode):
    """Counts the cache a step builds as KV cache too: the output of an op that reads
    a cache tensor and grows it along an axis (``torch.cat`` of the old keys and the new
    token's, as ``DynamicCache.update`` does) is the layer's new cache."""

    _GROWING = ("aten.cat",)

    def __init__(self, tracker: Any, tensors: list[torch.Tensor]) -> None:
        super().__init__()
        self.tracker = tracker
        self.storages = WeakIdKeyDictionary()
        for tensor in tensors:
            self.storages[tensor.untyped_storage()] = True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if str(func.overloadpacket) in self._GROWING and isinstance(out, torch.Tensor):
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            if any(t.untyped_storage() in self.storages for t in inputs):
                self.storages[out.untyped_storage()] = True
                self.tracker.flag_kv_cache(out)
        return out


def decode_prediction(model: CostModel, seq_len: int) -> Prediction:
    """Peak memory and FLOPs of generating the token at position ``seq_len``: one real
    decode step where the model has a cache, else the composed step."""
    why_not = None
    if has_cache_protocol(model.graph.module):
        step, why_not = model.decode_step(seq_len)
        if step is not None:
            return step
    composed = composed_prediction(model, seq_len)
    if why_not:
        return replace(composed, method=f"{composed.method} (the model's own cache could "
                                        f"not be run: {why_not})")
    return composed


def composed_prediction(model: CostModel, seq_len: int) -> Prediction:
    """A one-token forward plus the KV cache and the score row of the formula."""
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
                   phases={"decode:": memory}, kv_cache_bytes=sum(caches.values()),
                   flops_forward=step.flops_forward + attention_flops,
                   attention_flops=step.attention_flops + attention_flops,
                   method="one-token forward on fake tensors + KV cache formula")
