"""No error-level finding without evidence that survives the probe (issue 15, reach items).

Each model here is small and its figures are worked by hand in the test."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlint import reach
from archlint.api import analyze
from archlint.classify import classify
from archlint.load import load_module
from archlint.settings import Settings
from archlint.trace import trace_model


class SameConvStack(nn.Module):
    """A non-causal TCN: convs padded on both sides ("same"), plus a 1x1 residual
    projection that is causal only trivially. Look-ahead: sum of d*(k-1)/2 =
    (1+2+4+8+16+32+64+128) * 2 = 510 with k=5."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(4, 4, 5, padding=2 * d, dilation=d) for d in (1, 2, 4, 8, 16, 32, 64, 128))
        self.downsample = nn.Conv1d(4, 4, 1)

    def forward(self, x):
        skip = self.downsample(x)
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x + skip


def _report(model, n: int, dynamic: bool = False, **settings):
    graph = classify(trace_model(load_module(model), target_len=n))
    return reach.analyze(graph, Settings(seq_len=(n,), dynamic=dynamic, **settings))


def test_kernel_one_conv_is_no_evidence_of_causality():
    report = _report(SameConvStack(), 4096)
    assert not report.meant_causal
    # the look-ahead is read in input positions, not clipped at the trace length
    assert report.causality.ahead_by_index == 510
    assert report.receptive_field.size.at(4096) == 1021
    codes = [f.code for f in analyze(SameConvStack(), seq_len=4096, dynamic=False).findings]
    assert "AL104" not in codes


class DeclaredCausal(SameConvStack):
    causal = True


def test_declared_causal_is_evidence_and_the_leak_is_quoted_in_full():
    report = _report(DeclaredCausal(), 4096)
    assert report.meant_causal and "declares causal = True" in report.meant_causal_because
    found = [f for f in analyze(DeclaredCausal(), seq_len=4096, dynamic=False).findings
             if f.code == "AL104"]
    assert len(found) == 1 and "t+510" in found[0].message


class LeftPadded(nn.Module):
    """Causal by construction: left-only padding of a kernel-3 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3)

    def forward(self, x):
        return self.conv(nn.functional.pad(x, (2, 0)))


def test_left_only_padding_of_a_wide_kernel_is_evidence():
    report = _report(LeftPadded(), 1024)
    assert report.meant_causal and report.causal is True


class MaskedGlobal(nn.Module):
    """The static pass cannot read this mask (it is built from the input), so it
    predicts global mixing; the mask is in fact causal: the probe finds no look-ahead."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        n = x.shape[1]
        scores = x @ x.transpose(1, 2)
        ahead = torch.ones(n, n).triu(1).bool() & (x[:1, :, :1] == x[:1, :, :1])
        return torch.softmax(scores.masked_fill(ahead, -1e9), -1) @ self.proj(x)


def test_probe_that_sees_no_look_ahead_is_trusted():
    model = MaskedGlobal()
    report = _report(model, 256, dynamic=True, causal=True)
    assert report.causality is not None and not report.causality.causal
    assert report.probe is not None and report.probe.causal is True
    assert report.causal is True and report.causal_measured
    assert any("the measurement is trusted" in note for note in report.notes)
    codes = [f.code for f in analyze(model, seq_len=256, causal=True).findings]
    assert "AL104" not in codes


class NaNGradient(nn.Module):
    """sqrt at 0 has an infinite derivative: the probe's gradient is NaN/inf."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sqrt(self.proj(x) * 0.0).cumsum(1)


def test_nan_gradients_are_a_failed_probe_not_a_support():
    report = _report(NaNGradient(), 256, dynamic=True)
    assert report.probe is None
    assert any("NaN or inf" in note for note in report.notes)
    assert report.causal is True          # the static answer (a prefix scan) stands


@pytest.mark.parametrize("layers", [1, 3])
def test_positional_cumsum_and_glu_are_not_serial_steps(layers):
    """Position ids counted from a padding mask (RoBERTa) and a GLU over channels (the
    conformer's pointwise conv) mix nothing: S(n) = one step per attention layer."""

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.pos = nn.Embedding(300, 8)
            self.attn = nn.ModuleList(nn.MultiheadAttention(8, 2, batch_first=True)
                                      for _ in range(layers))
            self.up = nn.Linear(8, 16)

        def forward(self, ids):
            mask = ids.ne(1).int()
            positions = torch.cumsum(mask, 1) * mask + 1
            x = self.embed(ids) + self.pos(positions)
            for attn in self.attn:
                x = x + attn(x, x, x, need_weights=False)[0]
                x = nn.functional.glu(self.up(x), -1)
            return x

    report = _report(Encoder(), 256)
    assert report.serial_steps.at(256) == layers
