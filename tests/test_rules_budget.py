"""AL201, AL202, AL203, AL302: messages with numbers derived by hand, and locations."""

from __future__ import annotations

import pytest
import torch

from archlint.api import analyze as analyze_target
from archlint.cost import analyze
from archlint.cost.predict import CostModel
from archlint.graph import SourceLocation
from archlint.report import ModelInfo, Report
from archlint.rules.attention_dominated_compute import AttentionDominatedCompute
from archlint.rules.kv_cache_over_budget import KVCacheOverBudget
from archlint.rules.materialized_attention import MaterializedAttention
from archlint.rules.memory_over_budget import MemoryOverBudget
from archlint.settings import Settings
from archlint.units import format_bytes
from tests.cost_models import KorthikantiBlock, SdpaBlock, attention_layer, graph_of, sequence_spec

HERE = SourceLocation("model.py", 7)


def report_for(module, width, settings, layers=()):
    graph = graph_of(module, sequence_spec(width), list(layers))
    info = ModelInfo(name="model.py:Test", file="model.py", class_name="Test", parameters=0,
                     input="(B, n, d)")
    return Report(model=info, settings=settings, graph=graph, cost=analyze(graph, settings))


def materialized(heads=4):
    layer = attention_layer("", heads, 8, implementation="materialized")
    layer.location = HERE
    return layer


def test_memory_over_budget_names_the_attention_scores():
    """Hand-written attention in inference, p=0: at the softmax, the scaled scores and
    the probabilities are alive, 2 · B·h·n² float32 values; the bound is checked by
    predicting the peak at the reported length and one past it."""
    n, heads, budget = 2048, 4, 100_000_000
    settings = Settings(seq_len=(n,), mode="infer", memory=budget)
    report = report_for(KorthikantiBlock(32, heads, p=0.0).eval(), 32, settings, [materialized()])
    (finding,) = MemoryOverBudget(settings).check(report)
    peak = report.cost.target.peak
    scores = 2 * heads * n * n * 4
    fits = report.cost.curve.fits_up_to
    assert finding.message == (
        f"attention OOM at n={n} on 100.0 MB: needs {format_bytes(peak)} "
        f"(attention scores {format_bytes(scores)}); fits up to n={fits}")
    assert finding.location == HERE and "scaled_dot_product_attention" in finding.fix
    model = CostModel(report.graph, settings)
    assert model.predict(fits).peak <= budget < model.predict(fits + 1).peak


def test_memory_within_budget_is_clean():
    settings = Settings(seq_len=(256,), mode="infer", memory=10**9)
    report = report_for(KorthikantiBlock(32, 4).eval(), 32, settings, [materialized()])
    assert list(MemoryOverBudget(settings).check(report)) == []


def test_materialized_attention_reports_the_scores_a_fused_kernel_saves():
    n, heads = 1024, 4
    settings = Settings(seq_len=(n,), mode="infer")
    report = report_for(KorthikantiBlock(32, heads, p=0.0).eval(), 32, settings, [materialized()])
    (finding,) = MaterializedAttention(settings).check(report)
    scores = 2 * heads * n * n * 4
    assert f"at n={n} {format_bytes(scores)} of scores are held at the peak" in finding.message
    assert finding.location == HERE


def test_fused_attention_is_not_materialized():
    settings = Settings(seq_len=(1024,), mode="infer")
    layer = attention_layer("", 4, 8, implementation="fused")
    report = report_for(SdpaBlock(32, 4), 32, settings, [layer])
    assert list(MaterializedAttention(settings).check(report)) == []


def test_kv_cache_over_budget_in_decode_mode():
    """2 layers · 2 (K, V) · 4 heads · 8 dims · 4 bytes = 512 bytes per position."""
    n, budget = 1 << 20, 100_000_000
    layers = [attention_layer("0", 4, 8), attention_layer("1", 4, 8)]
    for layer in layers:
        layer.location = HERE
    settings = Settings(seq_len=(n,), mode="decode", memory=budget)
    report = report_for(torch.nn.Sequential(SdpaBlock(32, 4), SdpaBlock(32, 4)), 32, settings,
                        layers)
    (finding,) = KVCacheOverBudget(settings).check(report)
    assert f"KV cache at n={n} needs {format_bytes(512 * n)}" in finding.message
    assert list(MemoryOverBudget(settings).check(report)) == []      # reported once, here
    assert "2 attention layers, 512 B per position" in finding.message
    assert list(KVCacheOverBudget(settings.with_(mode="infer")).check(
        report_for(SdpaBlock(32, 4), 32, settings.with_(mode="infer"), layers))) == []


@pytest.mark.parametrize("n, flagged", [(4096, True), (128, False)])
def test_attention_dominated_compute_past_6d(n, flagged):
    """Inference FLOPs of a block: 4·n²·d attention against 24·n·d² per position."""
    d = 32
    settings = Settings(seq_len=(n,), mode="infer")
    layer = attention_layer("", 4, 8, implementation="fused")
    layer.location = HERE
    findings = list(AttentionDominatedCompute(settings).check(
        report_for(SdpaBlock(d, 4), d, settings, [layer])))
    assert bool(findings) == flagged
    if flagged:
        share = 4 * n * n * d / (4 * n * n * d + 24 * n * d * d)
        assert f"attention is {share:.0%} of the" in findings[0].message
        assert f"past n≈{6 * d}" in findings[0].message


def test_fixtures_are_located_at_their_attention_lines():
    """Through the whole pipeline: MultiheadAttention with its default need_weights=True
    keeps (B, h, n, n) weights for backward, at the line that builds it."""
    report = analyze_target("fixtures/conv_transformer.py", seq_len="8k", memory="1GB",
                            dynamic=False)
    found = {f.code: f for f in report.findings if f.code in ("AL201", "AL202")}
    assert set(found) == {"AL201", "AL202"}
    for finding in found.values():
        assert str(finding.location) == "fixtures/conv_transformer.py:25"
    assert found["AL201"].message.startswith("attention OOM at n=8192 on 1.0 GB")


def test_fused_attention_with_dropout_falls_back_and_the_fix_says_why(tmp_path):
    """CPU SDPA materializes the scores when attention dropout is active in training
    (the fake run sees it as the real one does); with dropout 0.0 nothing is held."""
    from archlint.api import analyze

    findings = {}
    for dropout in ("0.0", "0.1"):
        path = tmp_path / f"enc_{dropout.replace('.', '_')}.py"
        path.write_text(
            "import torch.nn as nn\n"
            "def build_model():\n"
            "    return nn.TransformerEncoder(nn.TransformerEncoderLayer(\n"
            f"        32, 4, batch_first=True, dropout={dropout}), 1)\n")
        report = analyze(str(path), seq_len="2k", dynamic=False, select="AL202")
        findings[dropout] = report.findings
    assert findings["0.0"] == []
    (finding,) = findings["0.1"]
    assert "set the attention dropout to 0.0" in finding.fix
    # (B, h, n, n) float32 at n=2048, h=4: 4 * 2048^2 * 4 bytes = 67.1 MB per tensor; the
    # math path keeps three for backward: softmax(QK^T), the float dropout mask drawn by
    # bernoulli_, and their product that multiplies V -> 3 * 67.1 = 201.3 MB
    assert "at n=2048 201.3 MB of scores are held" in finding.message, finding.message
