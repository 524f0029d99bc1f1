"""Decode steps of Hugging Face decoders against their own cache (``make test-models``):
the KV bytes against the formula 2·L·n·kv_heads·head_dim·4, the step's peak against a
real CPU step measured with torch.profiler's memory events."""

from __future__ import annotations

import pytest
import torch

from archlint.cost.decode import cache_argument, find_cache
from archlint.cost.predict import CostModel
from archlint.load import load_module
from archlint.settings import Settings
from archlint.trace import trace_model
from tests.cost_models import real_decode_peak

pytestmark = pytest.mark.models
transformers = pytest.importorskip("transformers", reason="needs the [models] extra")


def real_peak(model, n: int) -> int:
    name = cache_argument(model)
    return real_decode_peak(
        model, lambda: find_cache(model(torch.randint(0, 100, (1, n)), use_cache=True)),
        lambda cache: model(torch.randint(0, 100, (1, 1)), use_cache=True, **{name: cache}))


@pytest.mark.parametrize("build", [
    lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=4096)),
    lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=100, max_position_embeddings=4096)),
], ids=["gpt2", "llama-gqa"])
def test_a_decode_step_is_its_own_cache_and_matches_a_real_step(build):
    torch.manual_seed(0)
    model = build().eval()
    loaded = load_module(model)
    graph = trace_model(loaded)
    config = model.config
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = config.hidden_size // config.num_attention_heads
    n = 512
    prediction = CostModel(graph, Settings(mode="decode")).predict(n)
    assert prediction.method.startswith("one decode step against the model's own KV cache")
    assert prediction.kv_cache_bytes == \
        config.num_hidden_layers * 2 * n * kv_heads * head_dim * 4
    assert prediction.peak == real_peak(loaded.module, n)      # to the byte
