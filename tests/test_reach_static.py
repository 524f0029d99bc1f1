"""The static pass on small models built here: masks, slicing, flips, reshapes, norms,
conservative ops and the no-graph fallback; each checked against a hand derivation and,
where the pass is exact, against the gradient probe."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from test_reach_seed import channels, conv_stack, graph_of, reach_of, sequence
from torch import nn

from archlint.classify import classify
from archlint.load import load_module
from archlint.reach import analyze
from archlint.reach.hops import INF, HopProfile
from archlint.settings import Settings
from archlint.trace import trace_model


def test_hop_profiles_compose_like_the_seed_table():
    conv = HopProfile().step(2).step(2).step(2)              # 3 causal k=3 convs
    assert [conv.hops_for(d) for d in (0, 1, 2, 3, 5, 6, 7)] == [0, 1, 1, 2, 3, 3, INF]
    rnn = HopProfile().recur(1)
    assert rnn.hops_for(5) == 5 and rnn.hops_for(1023) == 1023
    attention = HopProfile().step(INF)
    assert attention.hops_for(10 ** 6) == 1
    assert conv.union(attention).hops_for(100) == 1
    both = HopProfile().step(10).union(HopProfile().step(4).step(4).step(4))
    assert [both.hops_for(d) for d in (10, 11, 12, 13)] == [1, 3, 3, INF]


class BandAttention(nn.Module):
    """Hand-written attention masked to a band built from arange at forward time."""

    def __init__(self, layers: int, behind: int, ahead: int):
        super().__init__()
        self.behind, self.ahead = behind, ahead
        self.proj = nn.ModuleList(nn.Linear(8, 24) for _ in range(layers))

    def forward(self, x):
        n = x.size(1)
        i = torch.arange(n).unsqueeze(1)
        j = torch.arange(n).unsqueeze(0)
        blocked = (j < i - self.behind) | (j > i + self.ahead)
        for proj in self.proj:
            q, k, v = proj(x).split(8, dim=-1)
            scores = (q @ k.transpose(-2, -1)).masked_fill(blocked, float("-inf"))
            x = x + scores.softmax(-1) @ v
        return x


def test_causal_band_mask_read_from_its_values():
    reach = reach_of(BandAttention(3, behind=5, ahead=0), sequence(8))
    assert reach.receptive_field.size.at(4096) == 1 + 3 * 5
    assert reach.receptive_field.right == 0 and reach.causal
    assert reach.dependency_path is None and reach.agreement


def test_symmetric_band_mask():
    reach = reach_of(BandAttention(2, behind=3, ahead=3), sequence(8), span=7)
    assert reach.receptive_field.size.at(4096) == 1 + 2 * 6
    assert (reach.receptive_field.left, reach.receptive_field.right) == (6, 6)
    assert reach.dependency_path == math.ceil(6 / 3)                   # 3 positions a hop
    assert reach_of(BandAttention(2, 3, 3), sequence(8), span=8,
                    dynamic=False).dependency_path == INF              # 2 layers reach 6
    assert reach.agreement


class PaddedAttention(nn.Module):
    """Key-padding mask computed from the input: the band cannot be read statically."""

    def forward(self, x):
        keep = x.sum(-1) > -1e9                                 # always true, data-dependent
        scores = (x @ x.transpose(-2, -1)).masked_fill(~keep[:, None, :], float("-inf"))
        return scores.softmax(-1) @ x


def test_data_dependent_mask_is_reported_and_left_open():
    reach = reach_of(PaddedAttention(), sequence(8))
    assert any("depends on the input" in note for note in reach.notes)
    assert reach.receptive_field.shape == "global" and reach.agreement


class LastStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = conv_stack(3, causal=True)

    def forward(self, x):
        return self.body(x)[:, :, -1]


def test_select_last_position_keeps_the_window():
    reach = reach_of(LastStep())
    assert reach.receptive_field.size.at(4096) == 7 and reach.causality is None
    assert reach.agreement


class Reversed(nn.Module):
    """A suffix sum through flips: output t reads t..n-1."""

    def forward(self, x):
        return x.flip(1).cumsum(1).flip(1)


def test_flip_scan_flip_is_a_suffix():
    reach = reach_of(Reversed(), sequence(4))
    assert reach.receptive_field.shape == "suffix"
    assert reach.causal is False and reach.agreement


class TokenMixer(nn.Module):
    """MLP-Mixer token mixing: a Linear over the sequence axis."""

    def __init__(self, length: int):
        super().__init__()
        self.mix = nn.Linear(length, length)

    def forward(self, x):
        return self.mix(x.transpose(1, 2)).transpose(1, 2)


def test_linear_over_the_sequence_is_global():
    graph = classify(trace_model(load_module(TokenMixer(40), sequence(4))))
    reach = analyze(graph, Settings(seq_len=(40,), probe_len=40))
    assert reach.receptive_field.shape == "global"
    assert reach.longest_path.at(40) == 1


class NormOverSequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)

    def forward(self, x):
        return self.norm(self.conv(x))


def test_groupnorm_statistics_span_the_sequence():
    reach = reach_of(NormOverSequence())
    assert reach.receptive_field.shape == "global"
    assert any("GroupNorm" in note for note in reach.notes)
    assert reach.agreement


class Sorted(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=1).values


def test_unknown_op_is_conservative_and_listed():
    reach = reach_of(Sorted(), sequence(4))
    assert any(item.startswith("aten.sort") for item in reach.unattributed)
    assert reach.receptive_field.shape == "global" and reach.agreement


class Chunked(nn.Module):
    """Attention inside non-overlapping chunks of 8 positions."""

    def forward(self, x):
        b, n, d = x.shape
        blocks = x.reshape(b, n // 8, 8, d)
        mixed = (blocks @ blocks.transpose(-2, -1)).softmax(-1) @ blocks
        return mixed.reshape(b, n, d)


def test_chunked_reshape_is_an_upper_bound():
    reach = reach_of(Chunked(), sequence(4))
    support, static = reach.probe.support["n"], reach.expected_support["n"]
    assert static[0] <= support[0] and support[1] <= static[1]
    assert support[1] - support[0] + 1 == 8                        # one chunk
    assert reach.trusted == "probe" and "widened" in reach.trust_reason


class UpDown(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(4, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose1d(4, 4, 4, stride=2, padding=1)

    def forward(self, x):
        return self.up(torch.tanh(self.down(x)))


def test_strided_and_transposed_convs():
    reach = reach_of(UpDown())
    assert reach.effective_stride == 1
    support, static = reach.probe.support["n"], reach.expected_support["n"]
    assert static[0] <= support[0] and support[1] <= static[1]


def test_sequence_first_lstm():
    """batch_first=False: the time axis is dim 0 of the input."""
    reach = reach_of(nn.LSTM(4, 8), lambda n, b: (torch.randn(n, b, 4),))
    assert reach.receptive_field.shape == "prefix" and str(reach.serial_steps) == "n"
    assert reach.agreement


class FFTConv(nn.Module):
    """A causal long convolution with a 5-tap kernel done with zero-padded FFTs."""

    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(4, 5))

    def forward(self, x):
        n = x.size(-1)
        spectrum = torch.fft.rfft(x, n=2 * n) * torch.fft.rfft(self.kernel, n=2 * n)
        return torch.fft.irfft(spectrum, n=2 * n)[..., :n]


def test_fft_convolution_has_the_kernel_window():
    reach = reach_of(FFTConv())
    assert reach.receptive_field.size.at(4096) == 5 and reach.causal
    assert reach.agreement


def test_no_graph_composes_layers_as_a_chain():
    model = conv_stack(8)
    graph = classify(trace_model(load_module(nn.Sequential(
        *[nn.Conv1d(4, 4, 3, padding=1) for _ in range(8)]), channels),
        frontends=("symbolic_trace",)))
    reach = analyze(graph, Settings(seq_len=(4096,), dynamic=False))
    assert reach.source == "chain" and "chain" in reach.notes[-1]
    assert reach.receptive_field.size.at(4096) == 17 and reach.serial_steps.at(4096) == 8
    graph.graph_module = None
    assert analyze(graph, Settings(dynamic=False)).receptive_field.size.at(4096) == 17
    assert graph_of(model).frontend == "torch.export"


def test_static_time_does_not_depend_on_the_target_length():
    graph = graph_of(conv_stack(4))
    small = analyze(graph, Settings(seq_len=(1024,), dynamic=False))
    large = analyze(graph, Settings(seq_len=(2 ** 20,), dynamic=False))
    assert small.receptive_field == large.receptive_field
    assert str(small.serial_steps) == str(large.serial_steps) == "4"


def test_node_meta_carries_the_reach():
    graph = graph_of(conv_stack(2))
    analyze(graph, Settings(dynamic=False))
    convs = [n for n in graph.graph_module.graph.nodes if "archlint.reach.mix" in n.meta]
    assert len(convs) == 2
    assert convs[-1].meta["archlint.reach"].frames["n"].window == (-2.0, 2.0)


def test_functional_sdpa_window_mask():
    class Windowed(nn.Module):
        def forward(self, x):
            n = x.size(1)
            i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
            keep = (j <= i) & (i - j < 4)
            return F.scaled_dot_product_attention(x, x, x, attn_mask=keep)

    reach = reach_of(Windowed(), sequence(8))
    assert reach.receptive_field.size.at(4096) == 4 and reach.causal and reach.agreement


class SelectiveScan(nn.Module):
    """h_t = a_t * h_{t-1} + b_t * x_t with an input-dependent a_t (Mamba's slow path):
    two ops fold position t into the state, still one serial step per position."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(4, 4)

    def forward(self, x):
        decay = torch.sigmoid(self.gate(x))
        h = x.new_zeros(x.size(0), 4)
        states = []
        for t in range(x.size(1)):
            h = decay[:, t] * h + x[:, t]
            states.append(h)
        return torch.stack(states, 1)


def test_selective_scan_counts_one_step_per_position():
    reach = reach_of(SelectiveScan(), sequence(4), span=100)
    assert str(reach.serial_steps) == "n" and reach.receptive_field.shape == "prefix"
    assert reach.dependency_path == 99 and reach.agreement


class BiasedSdpa(nn.Module):
    """SDPA with a float ``attn_mask`` built from a learned table: T5's relative position
    bias as transformers 5 passes it (``relative``), or a bias equal for every pair."""

    def __init__(self, relative: bool):
        super().__init__()
        self.relative = relative
        self.proj = nn.Linear(8, 24)
        self.table = nn.Embedding(64, 2)

    def forward(self, x):
        n = x.size(1)
        offsets = torch.arange(n)[None, :] - torch.arange(n)[:, None]
        buckets = (offsets.clamp(-31, 32) + 31) if self.relative else torch.zeros_like(offsets)
        bias = self.table(buckets).permute(2, 0, 1).unsqueeze(0)       # (1, heads, n, n)
        q, k, v = (t.view(1, n, 2, 4).transpose(1, 2) for t in self.proj(x).split(8, -1))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2) \
            .reshape(1, n, 8)


def test_a_relative_bias_given_to_sdpa_as_a_mask_is_positional():
    """A bias that differs between (query, key) pairs says where each key is: the
    attention is not order-blind (no AL105); one equal for every pair tells nothing."""
    relative = reach_of(BiasedSdpa(relative=True), sequence(8), dynamic=False)
    assert relative.order_blind_attention == []
    flat = reach_of(BiasedSdpa(relative=False), sequence(8), dynamic=False)
    assert [row.kind for row in flat.order_blind_attention] == ["attention"]
