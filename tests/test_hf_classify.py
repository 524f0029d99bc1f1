"""Classification on Hugging Face models (issue 15), built by ``tests/hf_zoo.py``.

Each test checks a layer kind against what the architecture is known to contain,
read from its config: how many attention layers, which positional scheme, which
sequence mixer replaces attention.
"""

from __future__ import annotations

import pytest

from archlint.classify import classify
from archlint.kinds import LayerKind
from archlint.load import load_module
from archlint.trace import trace_model

pytestmark = pytest.mark.models
zoo = pytest.importorskip("hf_zoo", reason="needs the [models] extra")


def classified(name: str):
    entry = zoo.ZOO[name]
    model = entry.build()
    return model, classify(trace_model(load_module(model, entry.example_input)))


def kinds(graph, kind: LayerKind):
    return [layer for layer in graph.layers if layer.kind is kind]


def test_t5_elementwise_min_max_are_not_reductions():
    """T5's relative-position buckets take ``torch.min(a, b)`` of two tensors: an
    elementwise op, not a reduction over the sequence (it raised a TypeError)."""
    model, graph = classified("t5")
    attention = kinds(graph, LayerKind.ATTENTION)
    assert len(attention) == model.config.num_layers
    assert not any(a.params["causal"] for a in attention)          # an encoder
    assert kinds(graph, LayerKind.GLOBAL_MIX) == []


def positional(graph):
    return kinds(graph, LayerKind.POSITIONAL)


@pytest.mark.parametrize("name, offset", [("opt", 2), ("bart", 2), ("roberta", 2)])
def test_learned_tables_with_an_offset_hold_rows_minus_offset(name, offset):
    """OPT and BART build ``nn.Embedding(max_position_embeddings + 2)`` and add 2 to the
    positions; RoBERTa numbers positions from ``padding_idx + 1`` in a table of
    ``max_position_embeddings`` rows (514: 512 usable)."""
    model, graph = classified(name)
    config = model.config
    rows = config.max_position_embeddings + (2 if name in ("opt", "bart") else 0)
    offset = config.pad_token_id + 1 if name == "roberta" else offset
    tables = [t for t in positional(graph) if t.params["table"] == "learned"]
    assert tables and {(t.params["rows"], t.params["offset"], t.params["max_len"])
                       for t in tables} == {(rows, offset, rows - offset)}
    assert kinds(graph, LayerKind.SSM) == []          # OPT's position cumsum is no scan


@pytest.mark.parametrize("name", ["gpt-j", "codegen"])
def test_fixed_sin_cos_buffer_indexed_by_position_is_a_table(name):
    model, graph = classified(name)
    (table,) = positional(graph)
    assert table.name == "rotary_emb.embed_positions"
    assert (table.params["table"], table.params["max_len"]) == (
        "indexed", model.config.n_positions)


@pytest.mark.parametrize("name", ["bloom", "falcon", "mpt"])
def test_alibi_is_the_positional_scheme(name):
    """Falcon builds rotary tables too, but with ``alibi=True`` ignores them."""
    model, graph = classified(name)
    schemes = {t.params.get("scheme") for t in positional(graph)}
    assert schemes == {"alibi"}
    attention = kinds(graph, LayerKind.ATTENTION)
    assert len(attention) == model.config.num_hidden_layers
    assert all(a.params["causal"] for a in attention)


def test_mpt_alibi_is_built_for_max_seq_len():
    model, graph = classified("mpt")
    assert {t.params["max_len"] for t in positional(graph)} == {model.config.max_seq_len}


def test_t5_bias_is_relative():
    _, graph = classified("t5")
    assert [t.params["scheme"] for t in positional(graph)] == ["relative"]


def test_fnet_fourier_transform_mixes_the_whole_sequence():
    model, graph = classified("fnet")
    mixing = kinds(graph, LayerKind.GLOBAL_MIX)
    assert len(mixing) == model.config.num_hidden_layers
    assert {(m.params["mixing"], m.params["causal"]) for m in mixing} == {("fourier", False)}
    assert kinds(graph, LayerKind.ATTENTION) == [] and graph.unattributed == []


def test_funnel_pooled_attention_is_softmax_attention_not_linear():
    """Funnel's second block attends from n/2 pooled queries to n keys: its
    ``einsum("bnij,bjnd->bind")`` of softmax weights and values is that attention."""
    model, graph = classified("funnel")
    attention = kinds(graph, LayerKind.ATTENTION)
    assert len(attention) == sum(model.config.block_sizes)
    assert {a.params["implementation"] for a in attention} == {"materialized"}


def test_mamba2_chunked_scan_is_listed():
    model, graph = classified("mamba2")
    scans = kinds(graph, LayerKind.SSM)
    assert len(scans) == model.config.num_hidden_layers
    assert {(s.params["chunk"], s.params["causal"]) for s in scans} == {
        (model.config.chunk_size, True)}
