"""The worked numbers of seed 000 (and the TCN formula), each from a model built here.

Every receptive field is checked twice: against the formula worked by hand in the test,
and against the gradient support the probe measures on real tensors.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import traced
from torch import nn

from archlint.classify import classify
from archlint.findings import Finding
from archlint.load import load_module
from archlint.reach import analyze as analyze_reach
from archlint.reach.measures import doubling_dilations, layers_to_cover
from archlint.report import ModelInfo, Report
from archlint.rules import run_rules
from archlint.settings import make_settings
from archlint.trace import trace_model

REACH_RULES = ("AL101", "AL102", "AL103", "AL104", "AL105", "AL301")


def conv_stack(layers: int, kernel: int = 3, dilations=None, causal: bool = False) -> nn.Module:
    """``layers`` Conv1d layers (B, 4, n) -> (B, 4, n), 'same' or left padding."""
    dilations = dilations or [1] * layers

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv1d(4, 4, kernel, dilation=d, padding=0)
                                       for d in dilations)

        def forward(self, x):
            for conv in self.convs:
                extent = conv.dilation[0] * (kernel - 1)
                pad = (extent, 0) if causal else (extent // 2, extent - extent // 2)
                x = torch.tanh(conv(nn.functional.pad(x, pad)))
            return x
    return Stack()


def channels(seq_len: int, batch: int):
    return (torch.randn(batch, 4, seq_len),)


def sequence(features: int):
    return lambda seq_len, batch: (torch.randn(batch, seq_len, features),)


def graph_of(model: nn.Module | str, example=channels):
    if isinstance(model, str):
        return traced(model)
    return classify(trace_model(load_module(model, example)))


def reach_of(model: nn.Module | str, example=channels, **options):
    """The reach section alone (no cost model): load, trace, classify, reach."""
    return analyze_reach(graph_of(model, example), make_settings(None, **options))


def findings_of(model: nn.Module | str, example=channels, **options) -> list[Finding]:
    """The findings of the reach rules on a model built here or a fixture path."""
    settings = make_settings(None, select=REACH_RULES, **options)
    graph = graph_of(model, example)
    report = Report(ModelInfo("test", None, type(graph.module).__name__, 0, ""), settings,
                    graph)
    report.reach = analyze_reach(graph, settings)
    return run_rules(report, settings)


@pytest.mark.parametrize(("layers", "expected"),
                         [(1, 3), (2, 5), (3, 7), (4, 9), (8, 17), (16, 33)])
def test_k3_stack_receptive_field_table(layers, expected):
    """Seed 000's table: k = 3, R = 1 + (k-1)L."""
    assert 1 + (3 - 1) * layers == expected
    reach = reach_of(conv_stack(layers))
    assert reach.receptive_field.size.at(4096) == expected
    assert reach.agreement, (reach.probe.support, reach.expected_support)
    assert reach.probe.support["n"][1] - reach.probe.support["n"][0] + 1 == expected


def test_dilations_1_2_4_8_reach_31():
    """R = 1 + (k-1) * sum(d) = 1 + 2 * 15 = 31."""
    reach = reach_of(conv_stack(4, dilations=[1, 2, 4, 8]))
    assert reach.receptive_field.size.at(4096) == 1 + 2 * (1 + 2 + 4 + 8) == 31
    assert reach.agreement


def test_n6_paths_rnn_transformer_cnn():
    """n = 6, position 1 must influence position 6 (distance 5): RNN 5 hops, a
    Transformer 1, and a k=3 CNN needs 3 layers (R = 1 + 2L >= 6)."""
    rnn = reach_of(nn.RNN(8, 8, batch_first=True), sequence(8), seq_len=6, span=6)
    assert rnn.dependency_path == 5
    transformer = reach_of(nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2), sequence(8),
        seq_len=6, span=6)
    assert transformer.dependency_path == 1
    assert layers_to_cover(6, 3) == 3
    assert reach_of(conv_stack(2), seq_len=6, span=6).receptive_field.size.at(6) == 5 < 6
    assert reach_of(conv_stack(3), seq_len=6, span=6).receptive_field.size.at(6) == 7 >= 6
    # a causal k=3 conv moves information k-1 = 2 positions per layer: ceil(5/2) = 3 hops
    assert reach_of(conv_stack(3, causal=True), seq_len=6, span=6).dependency_path == 3
    assert reach_of(conv_stack(2, causal=True), seq_len=6, span=6).dependency_path == math.inf


def test_n1024_serial_steps():
    """RNN S = 1024, 6-layer Transformer S = 6, 20-layer CNN S = 20."""
    rnn = reach_of(nn.RNN(8, 8, batch_first=True), sequence(8), seq_len=1024, dynamic=False)
    assert str(rnn.serial_steps) == "n" and rnn.serial_steps.at(1024) == 1024
    transformer = reach_of(nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 6), sequence(8),
        seq_len=1024, dynamic=False)
    assert transformer.serial_steps.at(1024) == 6
    cnn = reach_of(conv_stack(20), seq_len=1024, dynamic=False)
    assert cnn.serial_steps.at(1024) == 20


def test_span_512_kernel_3_needs_256_layers():
    """L >= (d-1)/(k-1) = 255.5, so 256 layers; with dilations doubling, 9 suffice."""
    assert layers_to_cover(512, 3) == 256
    assert doubling_dilations(512, 3) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    [finding] = [f for f in findings_of(conv_stack(1), span=512, dynamic=False)
                 if f.code == "AL101"]
    assert finding.message == "receptive field 3 < span 512"
    assert "255 more layers of kernel 3" in finding.fix      # 3 + 2*255 = 513 >= 512
    assert "needs 256 layers for span 512" in finding.fix
    assert "R = 1023" in finding.fix                          # 1 + 2*(2^9 - 1)


def tcn(levels: int, kernel: int) -> nn.Module:
    """Bai et al.'s TCN: per level two dilated causal convs (pad both sides, chomp)."""

    class Block(nn.Module):
        def __init__(self, dilation):
            super().__init__()
            self.pad = (kernel - 1) * dilation
            self.conv1 = nn.Conv1d(4, 4, kernel, padding=self.pad, dilation=dilation)
            self.conv2 = nn.Conv1d(4, 4, kernel, padding=self.pad, dilation=dilation)

        def forward(self, x):
            out = torch.relu(self.conv1(x)[:, :, :-self.pad])
            out = torch.relu(self.conv2(out)[:, :, :-self.pad])
            return torch.relu(out + x)

    return nn.Sequential(*[Block(2 ** i) for i in range(levels)])


@pytest.mark.parametrize(("levels", "kernel"), [(1, 2), (2, 3), (3, 2), (4, 3)])
def test_tcn_two_convs_per_block(levels, kernel):
    """R = 1 + 2(k-1)(2^L - 1), causal, S = 2L."""
    expected = 1 + 2 * (kernel - 1) * (2 ** levels - 1)
    reach = reach_of(tcn(levels, kernel))
    assert reach.receptive_field.size.at(4096) == expected
    assert reach.receptive_field.right == 0 and reach.causal
    assert reach.serial_steps.at(4096) == 2 * levels
    assert reach.agreement and reach.probe.causal


def test_seed_tcn_is_not_causal_and_grows():
    """Seed 003's TCN pads (k-1)d on both sides and never trims: n + 14 outputs."""
    reach = reach_of("fixtures/tcn_seed.py", seq_len=1024)
    assert str(reach.output_length) == "n+14"              # 2 * (1 + 2 + 4)
    assert reach.causality.by_index                        # output t reads t-14..t
    assert not reach.causality.by_end                      # kept last-n: reads t+14
    assert reach.causality.ahead_by_end == 14
    assert reach.causal is False and reach.meant_causal
    assert reach.leak_layer.name == "network.0"
    assert reach.probe.causal is False and reach.probe.ahead == 14


def test_gradient_decay_estimate_and_latency():
    """0.9^100 ~= 0.000026 and 1024 serial steps ~= 205 ms at 0.2 ms/step (seed 000)."""
    assert abs(0.9 ** 100 - 0.000026) < 1e-6
    found = findings_of(nn.RNN(8, 8, batch_first=True), sequence(8), seq_len=1024,
                        latency_ms=200, dynamic=False)
    messages = {f.code: f.message for f in found}
    assert messages["AL301"] == "1024 serial steps ≈ 205 ms at 0.2 ms/step > 200 ms"
    assert f"0.9^1023 = {0.9 ** 1023:.1e}" in messages["AL102"]
