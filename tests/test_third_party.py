"""Models nobody here wrote, built from their config objects with random weights.

Run with ``make test-models`` (needs the ``[models]`` extra: transformers, pytorch-tcn).
Each case checks the front-end that traced it, the input archlint inferred, and the
classification of its sequence mixers, including where the layer was constructed.
"""

from __future__ import annotations

import pytest

from archlint.classify import classify
from archlint.kinds import LayerKind
from archlint.load import load_module
from archlint.trace import trace_model

pytestmark = pytest.mark.models
transformers = pytest.importorskip("transformers", reason="needs the [models] extra")


def analyzed(model):
    loaded = load_module(model)
    return loaded, classify(trace_model(loaded))


def mixers(graph, kind):
    return [layer for layer in graph.layers if layer.kind is kind]


def test_gpt2_decoder_with_learned_positions():
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                     n_positions=128)
    loaded, graph = analyzed(transformers.GPT2Model(config))
    assert loaded.input_spec.kwargs["use_cache"] is False   # no cache objects in outputs
    assert graph.frontend == "torch.export"
    attention = mixers(graph, LayerKind.ATTENTION)
    assert [a.params["causal"] for a in attention] == [True, True]
    assert {a.params["heads"] for a in attention} == {4}
    (positions,) = mixers(graph, LayerKind.POSITIONAL)
    assert positions.name == "wpe" and positions.params["max_len"] == 128
    assert positions.location.file.endswith("modeling_gpt2.py")
    assert graph.unattributed == []


def test_llama_rotary_positions_are_length_free():
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=128, vocab_size=100)
    _, graph = analyzed(transformers.LlamaModel(config))
    assert graph.frontend == "torch.export"
    (rotary,) = mixers(graph, LayerKind.POSITIONAL)
    assert rotary.params == {"table": "computed", "max_len": None}
    attention = mixers(graph, LayerKind.ATTENTION)
    assert len(attention) == 2 and all(a.params["causal"] for a in attention)
    # located where the attention module is built in modeling_llama.py, not in the
    # library's sdpa helper
    assert all(a.location.file.endswith("modeling_llama.py") for a in attention)


def test_mistral_sliding_window_read_from_its_mask():
    config = transformers.MistralConfig(num_hidden_layers=2, hidden_size=64,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=128, vocab_size=100,
                                        sliding_window=8)
    _, graph = analyzed(transformers.MistralModel(config))
    attention = mixers(graph, LayerKind.ATTENTION)
    assert [(a.params["causal"], a.params["window"]) for a in attention] == [(True, 8)] * 2


def test_bert_encoder_is_bidirectional():
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=64,
                                     num_attention_heads=4, intermediate_size=128,
                                     vocab_size=100)
    _, graph = analyzed(transformers.BertModel(config))
    attention = mixers(graph, LayerKind.ATTENTION)
    assert [a.params["causal"] for a in attention] == [False, False]
    (positions,) = mixers(graph, LayerKind.POSITIONAL)
    assert positions.params["max_len"] == 512


def test_mamba_state_space_model():
    config = transformers.MambaConfig(num_hidden_layers=2, hidden_size=32, state_size=8,
                                      vocab_size=100)
    _, graph = analyzed(transformers.MambaModel(config))
    convs = mixers(graph, LayerKind.CONV)
    assert [(c.params["kernel_size"], c.params["causal"]) for c in convs] == [((4,), True)] * 2
    scans = mixers(graph, LayerKind.RECURRENCE)      # the slow path's loop over time
    assert [s.name for s in scans] == ["layers.0.mixer:loop", "layers.1.mixer:loop"]


def test_longformer_falls_back_and_finds_the_band():
    config = transformers.LongformerConfig(num_hidden_layers=2, hidden_size=64,
                                           num_attention_heads=4, intermediate_size=128,
                                           vocab_size=100, attention_window=8)
    _, graph = analyzed(transformers.LongformerModel(config))
    assert graph.frontend == "hooks"
    assert graph.frontend_notes[0].startswith("torch.export failed: GuardOnDataDependentSymNode")
    attention = mixers(graph, LayerKind.ATTENTION)
    assert [a.params.get("band") for a in attention] == [(4, 4), (4, 4)]
    (positions,) = mixers(graph, LayerKind.POSITIONAL)   # positions from cumsum(mask)
    assert positions.name == "embeddings.position_embeddings"


def test_wav2vec2_takes_a_raw_waveform():
    config = transformers.Wav2Vec2Config(
        num_hidden_layers=1, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    loaded, graph = analyzed(transformers.Wav2Vec2Model(config))
    assert loaded.input_spec.kind == "waveform"
    strides = [c.params["stride"] for c in mixers(graph, LayerKind.CONV)]
    assert strides[:2] == [(5,), (2,)]
    assert len(mixers(graph, LayerKind.ATTENTION)) == 1


@pytest.mark.parametrize("causal", [True, False])
def test_pytorch_tcn(causal):
    tcn = pytest.importorskip("pytorch_tcn", reason="needs the [models] extra")
    model = tcn.TCN(num_inputs=4, num_channels=[8, 8, 8], kernel_size=3, causal=causal,
                    input_shape="NCL")
    loaded, graph = analyzed(model)
    assert loaded.input_spec.description == "float (B, 4, n)"
    convs = [c for c in mixers(graph, LayerKind.CONV) if c.params["kernel_size"] == (3,)]
    assert [c.params["dilation"] for c in convs] == [(1,), (1,), (2,), (2,), (4,), (4,)]
    assert {c.params["causal"] for c in convs} == {causal}
