"""Reach on models nobody here wrote (the ``[models]`` extra): static vs gradient probe.

Hugging Face models built from config objects with random weights, as in
tests/test_third_party.py; each checks the receptive field derived from the model's
published design and that the static pass agrees with the gradient support (or, where it
handled ops conservatively, says it trusts the probe).
"""

from __future__ import annotations

import pytest
import torch

from archlint.classify import classify
from archlint.load import load_module
from archlint.reach import analyze
from archlint.settings import Settings
from archlint.trace import trace_model

pytestmark = pytest.mark.models
transformers = pytest.importorskip("transformers", reason="needs the [models] extra")


def reach(model):
    torch.manual_seed(0)
    graph = classify(trace_model(load_module(model)))
    return analyze(graph, Settings(seq_len=(4096,), span=512))


def small(config_class, **extra):
    return config_class(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                        intermediate_size=128, vocab_size=100, **extra)


def test_gpt2_is_a_causal_prefix():
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                     n_positions=128)
    result = reach(transformers.GPT2Model(config))
    assert result.receptive_field.shape == "prefix" and result.causal
    assert str(result.serial_steps) == "2" and result.agreement


def test_mistral_window_8_two_layers_reach_15():
    config = small(transformers.MistralConfig, num_key_value_heads=2, sliding_window=8)
    result = reach(transformers.MistralModel(config))
    assert result.receptive_field.size.at(4096) == 1 + 2 * (8 - 1)
    assert result.causal and result.agreement


def test_bert_is_global_and_llama_rotary_is_causal():
    bert = reach(transformers.BertModel(small(transformers.BertConfig)))
    assert bert.receptive_field.shape == "global" and bert.agreement
    llama = reach(transformers.LlamaModel(small(transformers.LlamaConfig,
                                                num_key_value_heads=2)))
    assert llama.receptive_field.shape == "prefix" and llama.agreement
    assert not llama.order_blind_attention        # rotary reaches the attention


def test_mamba_scan_loop_is_n_steps_per_layer():
    config = transformers.MambaConfig(num_hidden_layers=2, hidden_size=32, state_size=8,
                                      vocab_size=100)
    result = reach(transformers.MambaModel(config))
    assert str(result.serial_steps) == "2n+2"     # a scan and a causal conv per layer
    assert result.receptive_field.shape == "prefix" and result.agreement


def test_longformer_conservative_then_trusts_the_probe():
    config = transformers.LongformerConfig(num_hidden_layers=2, hidden_size=64,
                                           num_attention_heads=4, intermediate_size=128,
                                           vocab_size=100, attention_window=8,
                                           max_position_embeddings=256)
    result = reach(transformers.LongformerModel(config))
    support, static = result.probe.support["n"], result.expected_support["n"]
    assert static[0] <= support[0] and support[1] <= static[1]
    assert result.unattributed and result.trusted == "probe"
