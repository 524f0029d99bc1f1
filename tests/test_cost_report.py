"""Budgets by size or device, decode-mode KV cache, bad input, and the report section."""

from __future__ import annotations

import resource
import time

import pytest
import torch
from torch import nn

from archlint.cost import analyze
from archlint.cost.devices import DEVICES, RESERVE
from archlint.cost.predict import CostModel
from archlint.errors import ArchlintError
from archlint.settings import Settings, make_settings
from tests.cost_models import KorthikantiBlock, SdpaBlock, attention_layer, graph_of, sequence_spec


def test_device_names_give_usable_capacity():
    settings = make_settings(memory="a100-80gb")
    assert settings.memory == 81920 * 2**20 - RESERVE and settings.device == "a100-80gb"
    assert make_settings(memory="T4-16GB").memory == 15360 * 2**20 - RESERVE
    assert {"h100-80gb", "h200-141gb", "rtx4090-24gb", "v100-32gb"} <= set(DEVICES)


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(ArchlintError) as error:
        make_settings(memory="a100-90gb")
    assert "a100-80gb" in str(error.value) and "t4-16gb" in str(error.value)


def test_malformed_size_says_what_formats_work():
    with pytest.raises(ArchlintError) as error:
        make_settings(memory="16GX")
    assert "16GB" in str(error.value) and "GiB" in str(error.value)


def test_a_length_that_overflows_int64_is_rejected():
    """(B, h, n, n) scores at n = 2^32 have 2^66 elements: a clean ArchlintError."""
    model = CostModel(graph_of(KorthikantiBlock(16, 2, p=0.0), sequence_spec(16)),
                      Settings(mode="infer"))
    with pytest.raises(ArchlintError, match="overflow"):
        model.predict(2**32)


def test_decode_adds_the_kv_cache_and_the_score_row():
    """KV cache = Σ layers 2·B·n·heads·head_dim·bytes; the new token's scores B·h·n·4."""
    n, b, heads, head_dim = 4096, 2, 4, 8
    layers = [attention_layer("0", heads, head_dim), attention_layer("1", heads, head_dim)]
    graph = graph_of(nn.Sequential(SdpaBlock(32, heads), SdpaBlock(32, heads)),
                     sequence_spec(32), layers)
    model = CostModel(graph, Settings(mode="decode", batch=b, dtype="bfloat16"))
    step = model.predict(1, "infer")
    decode = model.predict(n)
    cache = 2 * (2 * b * n * heads * head_dim * 2)
    assert decode.memory.parts["kv_cache"] == cache
    assert decode.peak == step.peak + cache + b * heads * n * 4
    assert decode.flops_forward == step.flops_forward + 2 * 4 * b * n * heads * head_dim


def test_sliding_window_and_linear_attention_bound_the_cache():
    graph = graph_of(SdpaBlock(32, 4), sequence_spec(32), [
        attention_layer("window", 4, 8, window=128),
        attention_layer("linear", 4, 8, implementation="linear")])
    decode = CostModel(graph, Settings(mode="decode")).predict(1 << 20)
    assert decode.memory.parts["kv_cache"] == 2 * 128 * 32 * 4


def test_prediction_at_1m_is_cheap_and_allocates_nothing():
    """A 1M-token prediction takes about as long as a 1k one and no memory of size n."""
    graph = graph_of(SdpaBlock(64, 4), sequence_spec(64))
    model = CostModel(graph, Settings())
    model.predict(1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    big = model.predict(1 << 20)
    elapsed = time.perf_counter() - start
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    # the fc1 activation alone is n·4d float32 values, 1 GiB at n = 1M
    assert big.peak > (1 << 20) * 4 * 64 * 4 and elapsed < 10 and grown_kb < 200_000


def test_report_section_is_deterministic_and_has_the_budget_keys():
    torch.manual_seed(0)
    graph = graph_of(SdpaBlock(32, 4), sequence_spec(32))
    settings = Settings(seq_len=(256, 1024), memory=20_000_000)
    first, second = analyze(graph, settings), analyze(graph, settings)
    assert first.render_text() == second.render_text()
    assert first.to_dict() == second.to_dict()
    entries = first.to_dict()["lengths"]
    assert [e["seq_len"] for e in entries] == [256, 1024]
    for entry, prediction in zip(entries, first.predictions):
        assert entry["peak_bytes"] == prediction.peak == sum(entry["memory"].values())
        assert entry["flops"] == prediction.flops_forward + prediction.flops_backward
        assert entry["fits"] == (prediction.peak <= settings.memory)
    text = first.render_text()
    assert "fits 20.0 MB up to n=" in text and "attention FLOPs overtake" in text


def test_a_length_the_model_cannot_run_is_a_note_not_a_crash():
    class Capped(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", torch.zeros(64, 8))
            self.linear = nn.Linear(8, 8)

        def forward(self, x):
            return self.linear(x + self.table[: x.shape[1]])

    report = analyze(graph_of(Capped(), sequence_spec(8)), Settings(seq_len=(32, 128)))
    assert [p.seq_len for p in report.predictions] == [32]
    assert "n=128" in report.render_text() and 128 in report.failures
