"""The reach rules (AL101-AL105, AL301): the numbers in their messages worked out by hand
(every rule's flagged and clean cases run in tests/test_rule_cases.py)."""

from __future__ import annotations

import pytest
import torch
from test_reach_seed import conv_stack, findings_of, sequence
from torch import nn

from archlint.rules import all_rules, documentation, rule_by_code


def codes(path, **options) -> list[str]:
    return [f.code for f in findings_of(path, dynamic=False, **options)]


@pytest.mark.parametrize("code", [rule.code for rule in all_rules()])
def test_rule_documents_itself(code):
    """Every rule, not only these: ``archlint explain`` and the catalog read the sections.
    The flagged / clean cases of every rule run in tests/test_rule_cases.py."""
    doc = documentation(rule_by_code(code))
    for section in ("## What it does", "## Why is this bad?", "## Example", "## Fix"):
        assert section in doc


def only(code, path, *example, **options):
    [finding] = [f for f in findings_of(path, *example, dynamic=False, **options)
                 if f.code == code]
    return finding


def test_al101_message_and_computed_fix():
    finding = only("AL101", "fixtures/cnn_stack_k3.py", span=512)
    assert finding.message == "receptive field 17 < span 512"           # 1 + 2*8
    assert "add 248 more layers of kernel 3" in finding.fix             # 17 + 2*248 = 513
    assert "dilations 1, 2, 4, ..., 256 (9 layers of kernel 3: R = 1023)" in finding.fix
    assert "self-attention" in finding.fix
    assert str(finding.location) == "fixtures/cnn_stack_k3.py:23"       # the nn.Conv1d line
    dilated = only("AL101", "fixtures/dilated_cnn.py", span=100)
    assert dilated.message == "receptive field 31 < span 100"
    assert "add 35 more layers of kernel 3" in dilated.fix              # 31 + 2*35 = 101


def test_al102_path_and_gradient_decay():
    finding = only("AL102", "fixtures/lstm_model.py", seq_len="4096")
    assert finding.message.startswith("dependency path 4095 steps > 256 through lstm")
    assert f"0.9^4095 = {0.9 ** 4095:.1e}" in finding.message
    assert "AL102" not in codes("fixtures/lstm_model.py", seq_len="4096", span=200)
    strict = findings_of("fixtures/lstm_model.py", dynamic=False, seq_len="4096", span=200,
                         rule_options={"AL102": {"threshold": 100}})
    assert any(f.code == "AL102" and "199 steps > 100" in f.message for f in strict)


def test_al103_layers_and_window_needed():
    finding = only("AL103", "fixtures/sliding_window.py", span=512)
    assert finding.message == ("2 sliding-window attention layers x window 8 reach 15 "
                               "positions < span 512")
    assert "use 73 layers at window 8" in finding.fix                   # ceil(511 / 7)
    assert "window 257 with 2 layers" in finding.fix                    # ceil(511/2) + 1
    assert "AL101" not in codes("fixtures/sliding_window.py", span=512)


def test_al104_names_the_layer_and_the_alignment():
    finding = only("AL104", "fixtures/tcn_seed.py")
    assert finding.layer == "network.0"
    assert "output length n+14" in finding.message and "t+14" in finding.message
    assert "Chomp1d" in finding.fix
    forced = only("AL104", "fixtures/cnn_stack_k3.py", causal=True)
    assert forced.message.startswith("convs.0 lets the future in: output t reads inputs up "
                                     "to t+8 (meant to be causal: --causal)")


def test_al104_bidirectional_attention_after_causal_conv():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(8, 8, 3)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            h = self.conv(nn.functional.pad(x.transpose(1, 2), (2, 0))).transpose(1, 2)
            return self.attn(h, h, h)[0]

    finding = only("AL104", Mixed(), sequence(8))
    assert finding.layer == "attn" and "meant to be causal: conv is a causal conv" in \
        finding.message
    assert "is_causal=True" in finding.fix


def test_al105_order_blind_attention_confirmed_by_probe():
    [finding] = [f for f in findings_of("fixtures/seed000_transformer.py") if f.code == "AL105"]
    assert finding.message.startswith("attention layers.0.self_attn gets no positional "
                                      "information (and 1 more attention layers)")
    assert "confirmed" in finding.message
    assert "AL105" in codes("fixtures/conv_transformer.py")
    assert "AL105" not in codes("fixtures/sinusoidal_transformer.py")


def test_al301_latency_and_step_budget():
    finding = only("AL301", "fixtures/seed000_lstm.py", seq_len="1024", latency_ms=200)
    assert finding.message == "1024 serial steps ≈ 205 ms at 0.2 ms/step > 200 ms"
    steps = only("AL301", "fixtures/lstm_model.py", seq_len="1024", max_serial_steps=1000)
    assert steps.message == "2048 serial steps (S = 2n) at n=1024 > budget 1000"
    slow = findings_of("fixtures/gpt_sdpa.py", dynamic=False, seq_len="1024", latency_ms=0.3,
                       rule_options={"AL301": {"ms_per_step": 0.2}})
    assert [f.message for f in slow if f.code == "AL301"] == [
        "2 serial steps ≈ 0.4 ms at 0.2 ms/step > 0.3 ms"]                 # 2 * 0.2
    odd = findings_of("fixtures/gpt_sdpa.py", dynamic=False, seq_len="1024", latency_ms=0.2,
                      rule_options={"AL301": {"ms_per_step": 0.123}})
    assert [f.message for f in odd if f.code == "AL301"] == [
        "2 serial steps ≈ 0.246 ms at 0.123 ms/step > 0.2 ms"]             # 2 * 0.123
    short = only("AL301", "fixtures/lstm_model.py", seq_len="32", latency_ms=10)
    assert short.message == "64 serial steps ≈ 12.8 ms at 0.2 ms/step > 10 ms"  # 2*32*0.2


def test_rules_quiet_without_their_settings():
    assert not set(codes(conv_stack(8))) & {"AL101", "AL103", "AL301"}
    assert "AL104" not in codes(conv_stack(8))          # not meant to be causal
    torch.manual_seed(0)
