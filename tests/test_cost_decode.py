"""Decode mode runs one token against the model's own KV cache (:mod:`archlint.cost.decode`):
the cache bytes against the formula worked by hand, the step's peak against a real CPU
step measured with torch.profiler's memory events, the FLOPs against a hand count."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlint.cost.decode import cache_tensors, find_cache, has_cache_protocol
from archlint.cost.predict import CostModel
from archlint.settings import Settings
from tests.cost_models import graph_of, real_decode_peak, token_spec

VOCAB, WIDTH, HEADS, LAYERS = 100, 32, 4, 2


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(WIDTH, WIDTH) for _ in range(3))
        self.out = nn.Linear(WIDTH, WIDTH)

    def forward(self, x, past=None):
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, HEADS, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        if past is not None:                       # Hugging Face's legacy cache: concatenate
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        return x + self.out(y.transpose(1, 2).reshape(b, n, d)), (k, v)


class CachedDecoder(nn.Module):
    """forward(input_ids, past_key_values=None, use_cache=False), as HF decoders are."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, input_ids, past_key_values=None, use_cache=False):
        x, cache = self.embed(input_ids), []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, None if past_key_values is None else past_key_values[i])
            cache.append(kv)
        logits = self.head(x)
        return (logits, tuple(cache)) if use_cache else logits


def real_peak(module: nn.Module, n: int) -> int:
    """A real CPU step: the prefill's cache (a tuple the caller keeps while the step runs,
    as a generation loop does) and the step's allocations (:func:`real_decode_peak`)."""
    return real_decode_peak(
        module, lambda: module(torch.randint(0, VOCAB, (1, n)), use_cache=True)[1],
        lambda past: module(torch.randint(0, VOCAB, (1, 1)), past_key_values=past,
                            use_cache=True))


def test_the_decode_step_runs_the_models_cache_and_matches_a_real_step():
    torch.manual_seed(0)
    module = CachedDecoder().eval()
    assert has_cache_protocol(module)
    model = CostModel(graph_of(module, token_spec(VOCAB)), Settings(mode="decode"))
    n = 512
    prediction = model.predict(n)
    assert prediction.method.startswith("one decode step against the model's own KV cache")
    # KV cache: layers x (K, V) x B x n x d x 4 bytes, the formula as a cross-check
    assert prediction.kv_cache_bytes == LAYERS * 2 * 1 * n * WIDTH * 4
    # at the peak the old cache (the caller holds it) and the concatenated new one, of
    # n + 1 positions, are both alive: both are KV cache
    assert prediction.memory.parts["kv_cache"] == LAYERS * 2 * (2 * n + 1) * WIDTH * 4
    assert prediction.peak == real_peak(module, n)


def test_the_decode_step_flops_are_the_tokens_own():
    """Per layer: 4 projections 2·d·d, scores and values 2·(n+1)·d each (one query
    against n+1 keys); the head 2·d·V. No prefill FLOP is counted."""
    module = CachedDecoder().eval()
    model = CostModel(graph_of(module, token_spec(VOCAB)), Settings(mode="decode"))
    n = 300
    hand = LAYERS * (4 * 2 * WIDTH * WIDTH + 2 * 2 * (n + 1) * WIDTH) + 2 * WIDTH * VOCAB
    assert model.predict(n).flops_forward == hand


def test_a_fused_qkv_cache_keeps_the_whole_projection_alive():
    """K and V as views of one fused qkv output keep its storage (3·n·d floats per
    layer) alive in the cache: the run sees it, the formula (2·n·d) cannot."""
    class Fused(CachedDecoder):
        def __init__(self):
            super().__init__()
            for layer in self.layers:
                layer.qkv = nn.Linear(WIDTH, 3 * WIDTH)
                layer.forward = self._fused(layer)

        @staticmethod
        def _fused(layer):
            def forward(x, past=None):
                b, n, d = x.shape
                q, k, v = (t.view(b, n, HEADS, -1).transpose(1, 2)
                           for t in layer.qkv(x).split(d, -1))
                if past is not None:
                    k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
                y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
                return x + layer.out(y.transpose(1, 2).reshape(b, n, d)), (k, v)
            return forward

    module, n = Fused().eval(), 256
    model = CostModel(graph_of(module, token_spec(VOCAB)), Settings(mode="decode"))
    assert model.predict(n).kv_cache_bytes == LAYERS * 3 * n * WIDTH * 4
    assert model.predict(n).peak == real_peak(module, n)


def test_without_a_cache_protocol_the_step_is_composed():
    module = nn.Sequential(nn.Embedding(VOCAB, WIDTH), nn.Linear(WIDTH, WIDTH))
    assert not has_cache_protocol(module)
    prediction = CostModel(graph_of(module, token_spec(VOCAB)),
                           Settings(mode="decode")).predict(64)
    assert "formula" in prediction.method or "KV cache formula" in prediction.method


def test_find_cache_reads_legacy_tuples_and_cache_objects():
    k = torch.zeros(1, 2, 3, 4)
    legacy = ((k, k),)
    assert find_cache((torch.zeros(1), legacy)) is legacy

    class Cache:
        def __init__(self):
            self.layers = [{"keys": k, "values": torch.ones(1)}]

        def get_seq_length(self):
            return 3

    cache = Cache()
    assert find_cache((torch.zeros(1), cache)) is cache
    assert [t.shape for t in cache_tensors(cache)] == [k.shape, (1,)]
    assert find_cache(torch.zeros(1)) is None
