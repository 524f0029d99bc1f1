"""`archlint advise`: every suggested number against a hand computation or a second,
independent run of the cost model on a copy changed by hand.

The three cases issue 14 names: the seed transformer (fixtures/transformer_model.py) at
n=4096 on 16 GB with span 512; the seed LSTM (fixtures/seed000_lstm.py) with span 1024;
the 124M decoder (fixtures/gpt2_124m.py) at n=32k on 24 GB. Each model is analyzed and
advised once per module (the decoder takes about a minute), then every suggestion is
checked on its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from archlint.advise import ESTIMATED, RERUN, advise
from archlint.cli import main
from archlint.cost import CostModel
from archlint.session import CheckSession

GB = 10**9


def _advice(target: str, **overrides):
    report = CheckSession(overrides={"dynamic": False, **overrides}).analyze(target)
    return report, advise(report)


def _fixture(path: str):
    """A fixture file imported as a module of its own (its classes and build_model)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"advise_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _second_run(report, module: nn.Module | None = None, seq_len: int | None = None,
                **settings):
    """A fresh cost model on ``module`` (a hand-changed copy) or the model itself."""
    graph = report.graph if module is None else dataclasses.replace(report.graph,
                                                                    module=module)
    n = seq_len or report.settings.target_len
    return CostModel(graph, report.settings.with_(seq_len=(n,), **settings)).predict(n)


# -- the seed transformer: n=4096, 16 GB, span 512 --------------------------------------

@pytest.fixture(scope="module")
def transformer():
    return _advice("fixtures/transformer_model.py", seq_len=4096, memory="16GB", span=512)


def test_transformer_position_is_the_reports(transformer):
    report, advice = transformer
    now = advice.position
    assert now.peak == report.cost.target.peak and now.flops == report.cost.target.flops
    assert now.receptive_field == "n (all positions)" and now.receptive_size == 4096
    assert (now.dependency_path, now.serial_steps) == (1, 2)      # global attention, 2 layers
    assert now.fits and now.reaches
    assert [f.code for f in advice.blockers] == ["AL106"]          # the 512-row table
    keys = {s.key for s in advice.suggestions}
    # it fits already: no smaller n, batch, downsampling or layout is suggested
    assert keys == {"fused-attention", "bf16", "checkpoint", "window", "linear-attention"}


def test_transformer_fused_attention_is_a_rerun_on_a_copy_without_dropout(transformer):
    report, advice = transformer
    fused = advice.suggestion("fused-attention")
    assert fused.method == RERUN
    assert [site.location.line for site in fused.where] == [25]    # nn.TransformerEncoder(...)
    # by hand: the stock layers' attention dropout set to 0.0 on a copy of the model
    module = _fixture("fixtures/transformer_model.py").build_model()
    for layer in module.transformer.layers:
        layer.self_attn.dropout = 0.0
    second = _second_run(report, module)
    assert second.memory.parts["attention_scores"] == 0
    assert (fused.standing.peak, fused.standing.flops) == (second.peak, second.flops)
    # what it saves: 7 fp32 score copies of B·h·n·n at the peak (3 + 4 of the 2 layers)
    assert fused.details["scores_before"] == 7 * 1 * 4 * 4096 * 4096 * 4
    assert fused.standing.peak < advice.position.peak - fused.details["scores_before"] // 2


def test_transformer_sliding_window_by_hand(transformer):
    report, advice = transformer
    window = advice.suggestion("window")
    assert window.method == ESTIMATED
    # non-causal, 2 layers, span 512: w/2 per side per layer -> w = 2·⌈511/2⌉ + 1 = 513
    assert window.details["window"] == 513 and window.details["depth"] == 2
    assert window.details["layers_needed"] == math.ceil(511 / 256) == 2
    assert window.standing.receptive_size == 1 + 2 * 2 * 256 == 1025
    assert window.standing.dependency_path == 2 and window.standing.reaches
    scores = 7 * 1 * 4 * 4096 * 4096 * 4                # held at the peak (fp32 B·h·n·n)
    assert window.details["scores_after"] == 7 * 1 * 4 * 4096 * 513 * 4
    target = report.cost.target
    assert window.standing.peak == target.peak - scores + 7 * 4 * 4096 * 513 * 4
    assert window.standing.flops == (target.flops - target.attention_flops
                                     + target.attention_flops * 513 // 4096)


def test_transformer_linear_attention_by_hand(transformer):
    report, advice = transformer
    linear = advice.suggestion("linear-attention")
    target = report.cost.target
    # φ(K)ᵀV and φ(Q)(KᵀV): 2 · 2·B·h·n·d_h² forward per layer, ×3 for a train step,
    # 2 layers
    added = 2 * 3 * 2 * (2 * 1 * 4 * 4096 * 8 * 8)
    assert linear.details["added_flops"] == added
    assert linear.standing.flops == target.flops - target.attention_flops + added
    assert linear.standing.peak == target.peak - 7 * 4 * 4096 * 4096 * 4
    assert linear.standing.receptive_size == 4096 and linear.standing.dependency_path == 1


def test_transformer_bf16_and_checkpointing_rerun(transformer):
    report, advice = transformer
    bf16 = advice.suggestion("bf16")
    second = _second_run(report, dtype="bfloat16")
    assert (bf16.standing.peak, bf16.standing.flops) == (second.peak, second.flops)
    assert bf16.standing.flops == report.cost.target.flops        # autocast: same matmuls
    checkpoint = advice.suggestion("checkpoint")
    assert checkpoint.method == RERUN and checkpoint.details["blocks"] == 2
    assert [s.name for s in checkpoint.where] == ["transformer.layers.0-1"]
    # by hand: the backward peak is in the first block's recompute, when the second
    # block's input is freed: one block input (B, n, d) fp32 stays saved, plus the int64
    # token ids and positions
    assert checkpoint.details["activations_after"] == 4096 * 32 * 4 + 2 * 4096 * 8
    # recomputation: backward also runs both blocks' forward again
    assert checkpoint.standing.flops > report.cost.target.flops


def test_ranking_puts_same_model_changes_before_architecture(transformer):
    _, advice = transformer
    keys = [s.key for s in advice.suggestions]
    assert keys.index("bf16") < keys.index("window")
    assert keys.index("fused-attention") < keys.index("linear-attention")


@pytest.fixture(scope="module")
def batched():
    return _advice("fixtures/transformer_model.py", seq_len=4096, memory="8GB", span=512,
                   batch=8)


def test_batched_transformer_smaller_batch_and_largest_window(batched):
    report, advice = batched
    assert advice.position.fits is False                      # 16.0 GB at batch 8
    smaller = advice.suggestion("smaller-batch")
    b = smaller.details["batch"]
    assert b == 4 and smaller.details["accumulation"] == 2
    assert smaller.standing.peak == _second_run(report, batch=b).peak <= 8 * GB
    assert _second_run(report, batch=b + 1).peak > 8 * GB     # the largest that fits
    # the largest window that fits: scores held at the peak are 7 fp32 copies of
    # B·h·n·n (B=8), the rest of the step is what is left of the peak
    window = advice.suggestion("window")
    scores = 7 * 8 * 4 * 4096 * 4096 * 4
    rest = report.cost.target.peak - scores
    w = window.details["window"]
    assert rest + scores * w // 4096 <= 8 * GB < rest + scores * (w + 1) // 4096
    assert window.standing.receptive_size == 1 + 2 * 2 * ((w - 1) // 2)
    assert window.standing.fits and window.standing.reaches
    # same-model changes that fit come first, by the work of the effective batch: two
    # accumulated steps of batch 4 cost less than the fused kernel's step of 8 (its
    # backward recomputes the scores)
    keys = [s.key for s in advice.suggestions]
    fused = advice.suggestion("fused-attention")
    assert 2 * smaller.standing.flops < fused.standing.flops
    assert keys[:2] == ["smaller-batch", "fused-attention"]
    assert keys.index("parallel") < keys.index("window") < keys.index("shorter-n")


# -- the seed LSTM: span 1024 ------------------------------------------------------------

@pytest.fixture(scope="module")
def lstm():
    return _advice("fixtures/seed000_lstm.py", seq_len="4k", span=1024, latency_ms="50ms")


class HandTCN(nn.Module):
    """The TCN of the advice, written out by hand: 10 causal convs, k=3, d=1..512."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(16 if i == 0 else 32, 32, 3, dilation=2 ** i) for i in range(10))

    def forward(self, x):
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = torch.relu(conv(nn.functional.pad(h, (2 * conv.dilation[0], 0))))
        out = h.transpose(1, 2)
        last = h[:, :, -1].unsqueeze(0)
        return out, (last, last)


def test_lstm_position(lstm):
    _, advice = lstm
    now = advice.position
    assert now.dependency_path == 1023 and now.serial_steps == 4096
    assert now.reaches is False            # R covers it, but L(1023) = 1023 hops > 256
    assert now.on_time is False            # 4096 steps x 0.2 ms = 819 ms > 50 ms
    assert {s.key for s in advice.suggestions} == {"tcn", "bf16"}


def test_lstm_tcn_by_hand_and_by_a_second_analysis(lstm):
    import archlint

    report, advice = lstm
    tcn = advice.suggestion("tcn")
    assert tcn.method == RERUN
    assert tcn.details["dilations"] == tuple(2 ** i for i in range(10))
    assert tcn.details["receptive_field"] == 1 + (3 - 1) * 1023 == 2047   # R = 1+(k-1)·Σd
    assert tcn.standing.serial_steps == 10 and tcn.standing.dependency_path == 10
    assert tcn.standing.reaches and tcn.standing.on_time
    assert [str(site.location) for site in tcn.where] == ["fixtures/seed000_lstm.py:15"]
    # the same TCN written by hand, analyzed from scratch: reach and cost agree
    hand = archlint.analyze(HandTCN(), seq_len="4k", span=1024, dynamic=False)
    assert hand.reach.receptive_field.size.at(4096) == 2047
    assert hand.reach.serial_steps.at(4096) == 10
    assert (tcn.standing.peak, tcn.standing.flops) == (hand.cost.target.peak,
                                                       hand.cost.target.flops)


def test_lstm_bf16_rerun(lstm):
    report, advice = lstm
    bf16 = advice.suggestion("bf16")
    second = _second_run(report, dtype="bfloat16")
    assert bf16.standing.peak == second.peak
    assert bf16.standing.serial_steps == 4096 and not bf16.standing.reaches


# -- the 124M decoder: n=32k on 24 GB ---------------------------------------------------

@pytest.fixture(scope="module")
def decoder():
    return _advice("fixtures/gpt2_124m.py", seq_len="32k", memory="24GB")


def _meta_decoder():
    with torch.device("meta"):
        return _fixture("fixtures/gpt2_124m.py").build_model()


def test_decoder_position_and_what_it_already_has(decoder):
    report, advice = decoder
    assert advice.position.peak == report.cost.target.peak > 24 * GB
    assert advice.position.fits is False and advice.position.serial_steps == 12
    assert any(text.startswith("fused attention kernel") for text in advice.already)
    assert advice.suggestion("fused-attention") is None             # it has SDPA already
    assert any(text.startswith("sliding-window attention: no window fits")
               for text in advice.ruled_out)                         # no scores to window


def test_decoder_bf16_fits_by_a_second_run(decoder):
    report, advice = decoder
    bf16 = advice.suggestion("bf16")
    second = _second_run(report, dtype="bfloat16")
    assert bf16.standing.peak == second.peak <= 24 * GB and bf16.standing.fits
    assert advice.suggestions[0].key == "bf16"       # the first same-model change that fits


def test_decoder_ranking_is_the_readme_example(decoder):
    _, advice = decoder
    assert [s.key for s in advice.suggestions] == [
        "bf16", "checkpoint", "parallel", "downsample", "shorter-n", "linear-attention"]
    text = advice.render_text()
    assert "  now:   R n (causal prefix), L -, S 12; peak 34.7 GB, 162.8 TFLOPs" in text
    assert "1    bfloat16 autocast         19.7 GB  162.8 T" in text
    assert "   fixtures/gpt2_124m.py:77: blocks.0-11" in text


def test_decoder_checkpointing_by_hand(decoder):
    report, advice = decoder
    checkpoint = advice.suggestion("checkpoint")
    # 12 block inputs (B, n, 768) fp32, plus int64 token ids and positions
    inputs = 12 * 32768 * 768 * 4 + 2 * 32768 * 8
    assert checkpoint.details["activations_after"] == inputs
    assert [str(s.location) for s in checkpoint.where] == ["fixtures/gpt2_124m.py:77"]
    # at least: weights, gradients and Adam state (16 bytes per parameter), the kept
    # block inputs, and the 50257-way float32 logits with their dense gradient
    parameters = sum(p.numel() for p in dict.fromkeys(_meta_decoder().parameters()))
    floor = 16 * parameters + inputs + 2 * 32768 * 50257 * 4
    assert floor <= checkpoint.standing.peak < 24 * GB and checkpoint.standing.fits
    assert checkpoint.standing.peak < 1.15 * floor     # what else lives is one block's


def test_decoder_checkpointing_with_bf16_when_neither_fits_alone(decoder):
    """At 17 GB neither bf16 (19.7 GB) nor checkpointing (18.1 GB) fits: both together."""
    from archlint.advise.candidates import checkpointing_bf16
    from archlint.advise.context import Context

    report, advice = decoder
    goals = dataclasses.replace(advice.goals, budget=17 * GB)
    ctx = Context(report=report, goals=goals, position=advice.position.judged(goals))
    alone = [dataclasses.replace(advice.suggestion(key),
                                 standing=advice.suggestion(key).standing.judged(goals))
             for key in ("bf16", "checkpoint")]
    assert [s.standing.fits for s in alone] == [False, False]
    (both,) = checkpointing_bf16(ctx, alone)
    assert both.key == "checkpoint+bf16" and both.method == RERUN and both.standing.fits
    # the residual stream stays float32 under autocast: the same 12 block inputs are kept
    assert both.details["activations_after"] == 12 * 32768 * 768 * 4 + 2 * 32768 * 8
    assert both.standing.peak < min(s.standing.peak for s in alone)


def test_decoder_linear_attention_by_hand(decoder):
    report, advice = decoder
    linear = advice.suggestion("linear-attention")
    target = report.cost.target
    added = 12 * 3 * 2 * (2 * 1 * 12 * 32768 * 64 * 64)
    assert linear.standing.flops == target.flops - target.attention_flops + added
    assert linear.standing.peak == target.peak          # SDPA held no scores to remove


def test_decoder_shorter_sequence_is_the_budget_search(decoder):
    report, advice = decoder
    shorter = advice.suggestion("shorter-n")
    n = report.cost.curve.fits_up_to
    assert shorter.details["seq_len"] == n and shorter.standing.seq_len == n
    second = _second_run(report, seq_len=n)
    assert shorter.standing.peak == second.peak <= 24 * GB
    assert _second_run(report, seq_len=n + 1).peak > 24 * GB


class PooledGPT(nn.Module):
    """The decoder with the sequence average-pooled by 4 before its blocks and each
    position repeated 4 times after them, written by hand."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, tokens):
        g = self.gpt
        x = g.tok(tokens) + g.pos(torch.arange(tokens.size(1), device=tokens.device))
        x = x.unflatten(1, (x.size(1) // 4, 4)).mean(2)
        for block in g.blocks:
            x = block(x)
        x = x.repeat_interleave(4, dim=1)
        return g.head(g.ln_f(x))


def test_decoder_downsampling_factor_by_a_second_run(decoder):
    report, advice = decoder
    down = advice.suggestion("downsample")
    assert down.details["factor"] == 4 and down.details["tried"] == [2, 4]
    assert down.standing.fits
    second = _second_run(report, PooledGPT(_meta_decoder()))
    assert abs(down.standing.peak - second.peak) <= 0.01 * second.peak
    assert abs(down.standing.flops - second.flops) <= 0.01 * second.flops


def test_decoder_parallel_layout_is_the_simulated_search(decoder):
    from archlint.parallel.layout import Layout
    from archlint.parallel.plan import make_plan
    from archlint.parallel.simulate import simulate

    report, advice = decoder
    layout = advice.suggestion("parallel")
    assert layout.details["layout"] == "cp=2" and layout.details["devices"] == 2
    cp2 = Layout(cp=2)
    step = simulate(report.graph, cp2, make_plan(report.graph, cp2, (32768,)), 32768, 1,
                    "float32", "adam")
    assert layout.standing.peak == step.peak <= 24 * GB
    assert layout.standing.flops == report.cost.target.flops // 2


# -- the command line --------------------------------------------------------------------

def test_cli_advice_text_and_json():
    args = ["advise", "fixtures/seed000_lstm.py", "--seq-len", "4k", "--span", "1024",
            "--latency", "50ms", "--no-dynamic"]
    text = CliRunner().invoke(main, args, catch_exceptions=False)
    assert text.exit_code == 0, text.output
    assert "Advice for fixtures/seed000_lstm.py:lstm at n=4096" in text.output
    assert "fixtures/seed000_lstm.py:15: LSTM:lstm" in text.output
    assert "re-run (cost model on a copy with the recurrence replaced by the TCN)" in text.output
    first = CliRunner().invoke(main, args + ["--format", "json"], catch_exceptions=False)
    second = CliRunner().invoke(main, args + ["--format", "json"], catch_exceptions=False)
    assert first.output == second.output                        # deterministic
    document = json.loads(first.output)
    assert document["schema_version"] == "1.0"
    assert document["position"]["serial_steps"] == 4096
    tcn = document["suggestions"][0]
    assert tcn["key"] == "tcn" and tcn["after"]["serial_steps"] == 10
    assert tcn["where"][0]["location"] == "fixtures/seed000_lstm.py:15"
    # docs/json-schema.md names every key of the document
    import re
    from pathlib import Path

    doc = Path("docs/json-schema.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc[doc.index("## `archlint advise"):]))
    sections = {"advice": document, "goals": document["goals"],
                "position": document["position"], "suggestion": tcn, "after": tcn["after"],
                "where": tcn["where"][0]}
    missing = {name: sorted(set(value) - documented) for name, value in sections.items()}
    assert {name: keys for name, keys in missing.items() if keys} == {}


def test_advise_without_a_goal_is_one_line_before_torch():
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom archlint.cli import main\n"
         "try:\n    main(['advise', 'fixtures/seed000_lstm.py', '--seq-len', '4k'])\n"
         "except SystemExit as exit:\n    print(exit.code, 'torch' in sys.modules)"],
        capture_output=True, text=True)
    assert probe.stdout.strip() == "2 False"
    assert probe.stderr.count("\n") == 1 and "Traceback" not in probe.stderr
    assert probe.stderr.startswith("archlint: error: archlint advise needs a goal: --span")


@pytest.mark.parametrize("args,message", [
    (["--span", "1024", "--seq-len", "1k,2k"], "takes one --seq-len"),
    (["--span", "1024", "--mode", "decode"], "weighs train and infer steps"),
    (["--memory", "16GX"], "not a size"),
    (["--span", "lots"], "not a length"),
])
def test_advise_bad_options_exit_2(args, message):
    result = CliRunner().invoke(main, ["advise", "fixtures/seed000_lstm.py", *args])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_bidirectional_recurrence_gets_a_centred_tcn():
    """A bidirectional GRU reads both sides: its TCN is padded on both sides, and the
    re-run equals the cost model on the same centred stack written by hand."""
    report, advice = _advice("fixtures/bidirectional_gru.py", seq_len=1024, span=200)
    tcn = advice.suggestion("tcn")
    assert "split over both sides" in tcn.change
    assert tcn.details["dilations"] == (1, 2, 4, 8, 16, 32, 64)     # 1 + 2·127 = 255 >= 200
    assert tcn.standing.receptive_size == 255 and tcn.standing.serial_steps == 7
    gru = report.graph.module.gru

    class Centred(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(
                nn.Conv1d(gru.input_size if i == 0 else 2 * gru.hidden_size,
                          2 * gru.hidden_size, 3, dilation=2 ** i) for i in range(7))

        def forward(self, x):
            h = x.transpose(1, 2)
            for conv in self.convs:
                pad = 2 * conv.dilation[0]
                h = torch.relu(conv(nn.functional.pad(h, (pad // 2, pad - pad // 2))))
            return h.transpose(1, 2), h[:, :, -1].unsqueeze(0).expand(4, -1, -1)

    with torch.device("meta"):
        model = _fixture("fixtures/bidirectional_gru.py").build_model()
    model.gru = Centred().to("meta")
    second = _second_run(report, model)
    assert (tcn.standing.peak, tcn.standing.flops) == (second.peak, second.flops)
