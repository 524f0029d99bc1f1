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
