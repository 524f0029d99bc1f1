"""Per-device budgets under a parallel layout (archlint/parallel), each figure derived by
hand: ZeRO's 16 bytes per parameter (Rajbhandari et al. 2020), FSDP's collective sizes,
and the layout's constraints."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from archlint.cli import main
from archlint.errors import ArchlintError
from archlint.parallel.layout import Layout, layout_of, parse_degrees
from archlint.parallel.plan import Plan, blocks_of, make_plan
from archlint.parallel.simulate import simulate
from archlint.settings import make_settings
from tests.conftest import ROOT, traced

GPT = "fixtures/gpt2_124m.py"
#: GPT-2 small's parameter count, worked by hand in the fixture's docstring
P_124M = 124_439_808


def _step(path: str, layout: Layout, seq_len: int, dtype: str = "float32", batch: int = 1):
    graph = traced(path)
    return simulate(graph, layout, make_plan(graph, layout, (seq_len,)), seq_len, batch,
                    dtype, "adam")


def _state(step) -> int:
    return step.state["parameters"] + step.state["gradients"] + step.state["optimizer"]


def _padded(module, world: int) -> int:
    """Elements FSDP2 stores over ``world`` ranks: each parameter's dim 0 padded to a
    multiple of the world (tied weights once)."""
    unique = {id(p): p for p in module.parameters()}.values()
    return sum(math.ceil(p.shape[0] / world) * world * p[0].numel() for p in unique)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gpt_124m_fsdp8_holds_the_zero3_figure(dtype):
    """ZeRO-3 over 8: 16 bytes per parameter / 8. float32 Adam: 4 (weight) + 4 (gradient)
    + 8 (two moments); bfloat16 with fp32 master weights: the 12 bytes of master weight
    and moments plus a 4-byte fp32 gradient shard (FSDP2 reduces in fp32; the 2-byte
    bf16 weights and gradients exist only gathered, per block)."""
    step = _step(GPT, Layout(fsdp=8), 1024, dtype)
    assert step.method == "simulated"
    assert _state(step) == pytest.approx(16 * P_124M / 8, rel=0.01)
    assert step.state["parameters"] == pytest.approx(4 * P_124M / 8, rel=0.01)
    assert step.state["optimizer"] == pytest.approx(8 * P_124M / 8, rel=0.01)


def test_gpt_124m_fsdp8_collectives_by_hand():
    """Per step each block is all-gathered twice (forward, and again in backward after
    resharding) and its gradients reduce-scattered once: 2·4·P' and 4·P' bytes, with P'
    the parameters padded to a multiple of 8 along dim 0."""
    graph = traced(GPT)
    padded = _padded(graph.module, 8)
    assert padded == pytest.approx(P_124M, rel=1e-3)
    step = _step(GPT, Layout(fsdp=8), 1024)
    assert step.collectives["reduce_scatter"] == 4 * padded
    assert step.collectives["all_gather"] == 2 * 4 * padded
    # bfloat16 parameters are gathered at 2 bytes; gradients reduced at fp32
    half = _step(GPT, Layout(fsdp=8), 1024, "bfloat16")
    assert half.collectives["all_gather"] == 2 * 2 * padded
    assert half.collectives["reduce_scatter"] == 4 * padded


def test_lstm_under_fsdp4_is_simulated():
    """A non-GPT model: an LSTM stack sharded over 4 gives the simulated ZeRO-3 state,
    to the byte: 16 bytes per padded parameter / 4, plus Adam's step counter (a float32
    scalar per parameter tensor)."""
    graph = traced("fixtures/lstm_model.py")
    parameters = sum(p.numel() for p in graph.module.parameters())
    tensors = len(list(graph.module.parameters()))
    step = _step("fixtures/lstm_model.py", Layout(fsdp=4), 256)
    assert step.method == "simulated"
    assert _state(step) == 16 * _padded(graph.module, 4) // 4 + 4 * tensors
    assert _state(step) == pytest.approx(16 * parameters / 4, rel=0.01)
    assert step.parts["activations"] > 0


def test_blocks_are_the_repeated_stack():
    graph = traced(GPT)
    assert blocks_of(graph.module) == tuple(f"blocks.{i}" for i in range(12))
    assert blocks_of(traced("fixtures/lstm_model.py").module)   # the root's children


# ---------------------------------------------------------------- the setting


@pytest.mark.parametrize("text, canonical", [
    ("fsdp=8", "fsdp=8"), ("tp=2, dp=4,cp=2,fsdp=8", "dp=4,fsdp=8,cp=2,tp=2"),
    ({"fsdp": 8, "tp": 2}, "fsdp=8,tp=2"), ("FSDP=2", "fsdp=2")])
def test_layout_text_and_table_read_alike(text, canonical):
    assert parse_degrees(text) == canonical


@pytest.mark.parametrize("text, words", [
    ("fsdp=0", "must be at least 1"), ("xp=2", "unknown dimension 'xp'"),
    ("fsdp=two", "positive integer"), ("tp=2,tp=4", "given twice"), ("fsdp", "dimension=degree")])
def test_bad_layout_names_the_constraint(text, words):
    with pytest.raises(ArchlintError, match=words):
        make_settings(parallel=text)


def test_zero_spelling_shards_the_data_parallel_ranks():
    layout = layout_of(make_settings(parallel="dp=8", zero=2))
    assert (layout.fsdp, layout.dp, layout.zero) == (8, 1, 2)
    assert layout_of(make_settings()) is None
    with pytest.raises(ArchlintError, match="no data-parallel ranks"):
        layout_of(make_settings(zero=1))


@pytest.mark.parametrize("parallel, zero, text, sharded", [
    ("dp=8", 1, "dp=8", "ZeRO-1 over 8 (optimizer state sharded)"),
    ("dp=8", 2, "dp=8", "ZeRO-2 over 8 (gradients and optimizer state sharded)"),
    ("fsdp=8", 2, "dp=8", "ZeRO-2 over 8 (gradients and optimizer state sharded)"),
    ("dp=8", 3, "fsdp=8", "ZeRO-3 over 8 (parameters, gradients and optimizer state "
                          "sharded)"),
    ("dp=2,fsdp=4", 1, "dp=2,fsdp=4", "ZeRO-1 over 4 (optimizer state sharded)")])
def test_zero_layout_reads_as_the_ranks_it_shards(parallel, zero, text, sharded):
    """ZeRO-1/2 over data-parallel ranks is spelled dp, not fsdp (ZeRO-3's full shard),
    and the spelling gives the same layout back; the line says what is sharded."""
    layout = layout_of(make_settings(parallel=parallel, zero=zero))
    assert layout.text() == text
    assert layout.describe() == f"{text} (8 devices), {sharded}"
    assert layout_of(make_settings(parallel=layout.text(), zero=zero)) == layout
    named = {k: v for k, v in layout.to_dict().items() if k in ("dp", "fsdp")}
    assert ",".join(f"{k}={v}" for k, v in named.items() if v > 1) == text


@pytest.mark.parametrize("zero, rows, absent", [
    (1, ["parameters (whole)", "optimizer state (partition)",
         "parameter compute copies"], ["(shard)"]),
    (2, ["parameters (shard)", "optimizer state (shard)",
         "gathered parameters (whole)"], ["(whole)", "(partition)"]),
    (3, ["parameters (shard)", "optimizer state (shard)", "gathered parameters"],
     ["(whole)", "(partition)"])])
def test_zero_stage_table_says_what_is_sharded(zero, rows, absent):
    """ZeRO-1 (Rajbhandari et al. 2020) keeps parameters and gradients whole and
    partitions the optimizer state; ZeRO-2 shards gradients too (FSDP2 stores a
    parameter shard and keeps the whole parameters gathered); ZeRO-3 shards all three.
    The per-device table's row names say so, stage by stage."""
    import archlint

    report = archlint.analyze(SMALL, seq_len=128, parallel="dp=4", zero=zero,
                              dynamic=False)
    table = report.parallel.render_text()
    names = [line.rsplit("  ", 1)[0].strip() for line in table.splitlines()[3:]]
    for row in rows:
        assert row in names, table
    state = [name for name in names
             if name.startswith(("parameters", "gradients", "optimizer"))]
    assert len(state) >= 2, table
    assert not [name for name in state for word in absent if word in name], table
    assert table.splitlines()[0].startswith(
        f"Per device under {'dp' if zero < 3 else 'fsdp'}=4 (4 devices), ZeRO-{zero}")


def test_config_table_sets_the_layout(tmp_path):
    from archlint.config import load_config

    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.archlint]\nparallel = {fsdp = 8, tp = 2}\ncheckpoint = "full"\n')
    settings = load_config(path).settings_for(None)
    assert (settings.parallel, settings.checkpoint) == ("fsdp=8,tp=2", "full")


# ---------------------------------------------------------------- violations, bad input

TWELVE_HEADS = '''
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(64, 48)
        self.attn = nn.MultiheadAttention(48, 12, batch_first=True)

    def forward(self, ids):
        x = self.embed(ids)
        return self.attn(x, x, x, need_weights=False)[0]
'''


def test_tp_must_divide_the_heads_of_the_124m_decoder():
    graph = traced(GPT)
    violations = make_plan(graph, Layout(tp=5), (1024,)).violations
    assert [v.message for v in violations] == [
        "tp=5 does not divide the 12 heads of blocks.0.attn",        # not qkv's 2304 too
        "tp=5 does not divide the 3072 output features of blocks.0.mlp.fc",
        "tp=5 does not divide the 3072 input features of blocks.0.mlp.proj"]
    assert violations[0].location.line == 41
    assert "1, 2, 3, 4, 6, 12" in violations[0].fix
    assert not make_plan(graph, Layout(tp=4), (1024,)).violations


def test_cp_must_divide_the_sequence_into_two_chunks_per_rank():
    graph = traced(GPT)
    assert make_plan(graph, Layout(cp=7), (8192,)).violations[0].message.startswith(
        "cp=7 does not divide n=8192 into 2·cp = 14 chunks")
    assert not make_plan(graph, Layout(cp=4), (8192,)).violations
    lstm = traced("fixtures/lstm_model.py")
    assert "recurrence" in make_plan(lstm, Layout(cp=2), (256,)).violations[0].message


@pytest.mark.parametrize("layout, words", [
    ("tp=5", "tp=5 does not divide the 12 heads of attn"),
    ("fsdp=0", "fsdp=0: a degree must be at least 1"),
    ("cp=7", "cp=7 does not divide n=8192"),
    ("pp=2", "unknown dimension 'pp'")])
def test_bad_layout_on_the_command_line_is_one_line_exit_2(tmp_path, layout, words):
    model = tmp_path / "tiny.py"
    model.write_text(TWELVE_HEADS)
    result = CliRunner().invoke(main, ["check", str(model), "--seq-len", "8192",
                                       "--parallel", layout, "--no-dynamic", "--isolated"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("archlint")]
    assert len(lines) == 1 and words in lines[0], result.stderr


# ---------------------------------------------------------------- the budget answers


def test_over_budget_names_a_layout_that_fits_and_one_that_does_not():
    """AL207's fix is the smallest fsdp degree found to fit; its half must not fit."""
    import archlint

    report = archlint.analyze("fixtures/gpt_sdpa.py", seq_len=256, memory="2MB",
                              parallel="fsdp=1", dynamic=False)
    found = report.parallel.smallest_layout.value
    assert found is not None and found.fsdp > 1
    finding = next(f for f in report.findings if f.code == "AL207")
    assert f"--parallel {found.text()}" in finding.fix
    assert "AL201" not in [f.code for f in report.findings]       # the budget is per device
    budget = report.parallel.budget
    assert _step("fixtures/gpt_sdpa.py", found, 256).peak <= budget
    assert _step("fixtures/gpt_sdpa.py", found.with_degrees(fsdp=found.fsdp // 2),
                 256).peak > budget
    fits = report.parallel.fits_up_to.value
    if fits:
        assert _step("fixtures/gpt_sdpa.py", Layout(), fits).peak <= budget


def test_plan_without_layout_is_absent():
    import archlint

    report = archlint.analyze("fixtures/gpt_sdpa.py", seq_len=64, dynamic=False)
    assert report.parallel is None and report.to_dict()["parallel"] is None
    assert isinstance(Plan(blocks=()), Plan)


def test_parallel_json_keys_are_documented():
    import json
    import re

    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "json-schema.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    result = CliRunner().invoke(main, ["check", "fixtures/gpt_sdpa.py", "--seq-len", "128",
                                       "--parallel", "fsdp=2", "--memory", "2MB",
                                       "--no-dynamic", "--format", "json", "--isolated"])
    section = json.loads(result.stdout)["reports"][0]["parallel"]
    keys = set(section) | set(section["layout"]) | set(section["lengths"][0]) \
        | set(section["lengths"][0]["memory"]) | set(section["lengths"][0]["communication"]) \
        | set(section["fits_up_to"]) | set(section["tensor_parallel"])
    assert sorted(keys - documented) == []


def test_tp2_halves_the_attention_and_mlp_weights_of_the_124m_decoder():
    """Megatron's split by hand: colwise Linears (qkv, mlp.fc) keep half their weight
    and bias, rowwise ones (attn.proj, mlp.proj) half their weight and all of their
    bias; embeddings and LayerNorms are replicated. Per device: 4 bytes per kept
    parameter (fsdp=1: nothing else shards them)."""
    graph = traced(GPT)
    halved = 0
    for block in graph.module.blocks:
        for linear in (block.attn.qkv, block.mlp.fc):
            halved += linear.weight.numel() + linear.bias.numel()
        for linear in (block.attn.proj, block.mlp.proj):
            halved += linear.weight.numel()
    one = _step(GPT, Layout(), 1024)
    two = _step(GPT, Layout(tp=2), 1024)
    assert one.method == two.method == "simulated"
    assert one.state["parameters"] == 4 * P_124M
    assert two.state["parameters"] == 4 * (P_124M - halved // 2)
    assert two.collectives["all_reduce"] > 0          # rowwise outputs are all-reduced


def test_cp2_halves_the_activations_per_device():
    """Context parallel 2: each rank holds n/2 positions; every activation the fused
    decoder saves for backward (per layer: the LayerNorm, qkv, attention output and
    MLP tensors of b·n·width each; the logits b·n·V) is proportional to n, so a
    device's saved activations halve against one device."""
    one = _step(GPT, Layout(), 2048)
    two = _step(GPT, Layout(cp=2), 2048)
    assert one.saved["activations"] > 0
    assert two.saved["activations"] == pytest.approx(one.saved["activations"] / 2, rel=0.01)
    assert _state(two) == _state(one)                # cp does not shard the weights


# ---------------------------------------------------------------- activation checkpointing

#: the 124M decoder's sizes (fixtures/gpt2_124m.py)
S, H, HEADS, LAYERS, VOCAB = 1024, 768, 12, 12, 50257


def _outside_blocks(s: int, b: int = 1) -> int:
    """Bytes the 124M decoder saves outside its blocks in bfloat16, by hand: the token
    ids and positions (int64, 8·s·b and 8·s), ln_f's input and output (2·s·b·h each) and
    its mean and rstd (bfloat16, 2·s·b each), and the logits the forward returns
    (2·s·b·V)."""
    return 8 * s * b + 8 * s + 2 * (2 * s * b * H) + 2 * (2 * s * b) + 2 * s * b * VOCAB


def _block(s: int, b: int = 1) -> int:
    """Bytes one block saves for backward in bfloat16, by hand (Korthikanti et al. 2022,
    Sec. 4.1, with no dropout): LayerNorm inputs 2+2, qkv input 2, q/k/v 6, attention
    output (the proj input) 2, MLP input 2, GELU input 8 and output 8 — 32·s·b·h, their
    34·s·b·h less the two 1-byte dropout masks — plus each LayerNorm's mean and rstd
    (2·s·b bytes each) and the fused attention's log-sum-exp (float32, 4·a·s·b); no
    a·s²·b scores (scaled_dot_product_attention never stores them)."""
    return 32 * s * b * H + 4 * (2 * s * b) + 4 * HEADS * s * b


def test_no_checkpoint_saves_every_block_of_the_124m_decoder():
    step = _step(GPT, Layout(fsdp=8), S, "bfloat16")
    assert step.saved["activations"] == LAYERS * _block(S) + _outside_blocks(S)


def test_full_checkpoint_keeps_the_korthikanti_2sbh_per_layer():
    """Full recompute (Korthikanti et al. 2022, Sec. 5): each layer keeps only its input,
    2·s·b·h bytes at 16-bit; the rest is recomputed in backward, one block at a time."""
    step = _step(GPT, Layout(fsdp=8, checkpoint="full"), S, "bfloat16")
    assert step.saved["activations"] == LAYERS * 2 * S * H + _outside_blocks(S)
    none = _step(GPT, Layout(fsdp=8), S, "bfloat16")
    assert none.saved["activations"] - step.saved["activations"] \
        == LAYERS * (_block(S) - 2 * S * H)
    assert _state(step) == _state(none)              # checkpointing keeps the weights


def test_full_checkpoint_peak_holds_one_recomputed_block(tmp_path):
    """At the backward peak the device holds the kept layer inputs plus the one block
    being recomputed (its 32·s·b·h + statistics, allocated in backward: temporaries), not
    two. A small vocabulary (64) keeps the logits from setting the peak."""
    model = tmp_path / "gpt_small_vocab.py"
    model.write_text((ROOT / GPT).read_text().replace(
        "GPT(vocab_size=50257, max_len=1024, d_model=768, n_heads=12, n_layers=12)",
        "GPT(vocab_size=64, max_len=1024, d_model=768, n_heads=12, n_layers=4)"))
    layout = Layout(fsdp=8, checkpoint="full")
    graph = traced(str(model))
    step = simulate(graph, layout, make_plan(graph, layout, (S,)), S, 1, "bfloat16", "adam")
    assert step.phase == "backward"
    kept = 4 * 2 * S * H
    held = step.parts["activations"] + step.parts["temporaries"]
    assert step.parts["temporaries"] >= _block(S)
    assert _block(S) <= held < kept + 2 * _block(S)
    plain = simulate(graph, Layout(fsdp=8), make_plan(graph, Layout(fsdp=8), (S,)), S, 1,
                     "bfloat16", "adam")
    assert step.peak < plain.peak


def test_selective_checkpointing_is_refused_with_the_reason(tmp_path):
    model = tmp_path / "tiny.py"
    model.write_text(TWELVE_HEADS)
    result = CliRunner().invoke(main, ["check", str(model), "--seq-len", "64", "--parallel",
                                       "fsdp=2", "--checkpoint", "selective", "--no-dynamic",
                                       "--isolated"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'selective' is not simulated" in lines[0], result.stderr


# ---------------------------------------------------------------- ZeRO stages

SMALL = "fixtures/gpt_sdpa.py"


def _partitioned(module, world: int) -> int:
    """Elements of rank 0's ZeRO-1 optimizer partition: ⌈numel/N⌉ of each parameter."""
    unique = {id(p): p for p in module.parameters()}.values()
    return sum(-(-p.numel() // world) for p in unique)


@pytest.mark.parametrize("zero", [1, 2, 3])
def test_zero_stage_state_by_hand(zero):
    """float32 Adam, N = 4 data-parallel ranks, Ψ parameters (Rajbhandari et al. 2020,
    Fig. 1, with 4 + 4 + 8 bytes per parameter instead of mixed precision's 2 + 2 + 12):

    - ZeRO-1 shards the optimizer state: 4Ψ + 4Ψ + 8Ψ/N (gradients whole, all-reduced);
    - ZeRO-2 shards gradients too: 4Ψ + 4Ψ/N + 8Ψ/N, plus FSDP2's own 4Ψ/N shard of the
      parameters next to the whole ones it keeps gathered;
    - ZeRO-3 shards the parameters: (4 + 4 + 8)Ψ/N.

    Shards are each parameter's dim 0 padded to a multiple of N; Adam adds a float32
    step counter per parameter tensor."""
    graph = traced(SMALL)
    psi = sum(p.numel() for p in graph.module.parameters())
    tensors = len(list(graph.module.parameters()))
    world = 4
    shard = _padded(graph.module, world) // world
    step = _step(SMALL, Layout(fsdp=world, zero=zero), 128)
    assert step.method == "simulated"
    counters = 4 * tensors
    expected = {
        1: (4 * psi, 4 * psi, 8 * _partitioned(graph.module, world) + counters),
        2: (4 * psi + 4 * shard, 4 * shard, 8 * shard + counters),
        3: (4 * shard, 4 * shard, 8 * shard + counters),
    }[zero]
    assert (step.state["parameters"], step.state["gradients"], step.state["optimizer"]) \
        == expected
    paper = {1: 8 * psi + 8 * psi / world, 2: 4 * psi + 12 * psi / world,
             3: 16 * psi / world}[zero]
    extra = 4 * psi / world if zero == 2 else 0          # FSDP2's shard, stated above
    assert _state(step) - extra == pytest.approx(paper, rel=0.01)


def test_zero_stages_differ_in_collectives_and_gathered_weights():
    """Per step, 4-byte parameters P' (padded): ZeRO-3 all-gathers each block twice
    (forward, backward) and reduce-scatters once; ZeRO-2 gathers once and keeps every
    block gathered through backward (4Ψ at the peak); ZeRO-1 all-reduces the whole
    gradient (4Ψ) and gathers the updated partitions after the step (by formula)."""
    graph = traced(SMALL)
    psi = sum(p.numel() for p in graph.module.parameters())
    padded = _padded(graph.module, 4)
    three, two, one = (_step(SMALL, Layout(fsdp=4, zero=z), 128) for z in (3, 2, 1))
    assert (three.collectives["all_gather"], three.collectives["reduce_scatter"]) \
        == (2 * 4 * padded, 4 * padded)
    assert (two.collectives["all_gather"], two.collectives["reduce_scatter"]) \
        == (4 * padded, 4 * padded)
    assert one.collectives["reduce_scatter"] == 0
    assert one.collectives["all_reduce"] == 4 * psi
    assert one.collectives["all_gather"] == 4 * 4 * _partitioned(graph.module, 4)
    assert any("by formula" in text for text in one.formula)
    assert not three.formula and not two.formula
    assert two.parts["gathered_parameters"] == 4 * psi
    assert three.parts["gathered_parameters"] < 4 * psi


# ---------------------------------------------------------------- offload


@pytest.mark.parametrize("zero", [1, 2, 3])
def test_offload_moves_the_state_to_host_memory(zero):
    """float32 Adam over N = 4, by hand. ZeRO-3 offload (FSDP2's CPUOffloadPolicy) keeps
    the parameter shards (4Ψ/N), gradient shards (4Ψ/N) and optimizer state (8Ψ/N + Adam's
    step counters) on the host; ZeRO-1/2 offload the optimizer state alone (ZeRO-Offload).
    The device's backward peak loses exactly what was resident there at that moment:
    the parameter shard and optimizer state for ZeRO-3 (no gradient is reduced yet at the
    peak), the optimizer state for ZeRO-1/2; the host holds it instead."""
    graph = traced(SMALL)
    tensors = len(list(graph.module.parameters()))
    shard = _padded(graph.module, 4) // 4
    partition = _partitioned(graph.module, 4) if zero == 1 else shard
    optimizer = 8 * partition + 4 * tensors
    plain = _step(SMALL, Layout(fsdp=4, zero=zero), 128)
    off = _step(SMALL, Layout(fsdp=4, zero=zero, offload=True), 128)
    assert plain.phase == off.phase == "backward"
    assert off.parts["optimizer"] == 0 and plain.parts["optimizer"] == optimizer
    moved = optimizer + (4 * shard if zero == 3 else 0)
    assert plain.peak - off.peak == moved
    assert off.host["optimizer"] >= optimizer
    if zero == 3:
        assert off.parts["parameters"] == off.parts["gradients"] == 0
        assert (off.host["parameters"], off.host["gradients"]) == (4 * shard, 4 * shard)
    else:
        assert off.host["parameters"] == off.host["gradients"] == 0
        assert off.parts["parameters"] == plain.parts["parameters"] > 0
    assert _state(off) == _state(plain)               # the same state, held elsewhere
    assert not plain.host


# ---------------------------------------------------------------- context parallel exchange


def test_cp2_counts_the_ring_key_value_exchange_by_hand():
    """cp=2 on the 124M decoder in bfloat16 at n=2048, B=1: each rank runs 1024 positions
    (the same local step as one device at n=1024) and exchanges keys and values as torch's
    ring attention does (archlint/parallel/ring.py). One local K chunk:
    kv = 1·12 heads·1024·64·2 bytes. Per layer: forward all-gather of K and V, 2·2·kv,
    again in backward, 2·2·kv; float32 dK/dV all-to-all at each of the 2 ring steps,
    2·(2·kv·2); receive buffers (2 + 1)·2·kv + 2·(2·kv·2) added to the peak."""
    kv = 1 * HEADS * 1024 * 64 * 2
    local = _step(GPT, Layout(), 1024, "bfloat16")
    two = _step(GPT, Layout(cp=2), 2048, "bfloat16")
    assert two.collectives["all_gather"] - local.collectives["all_gather"] \
        == LAYERS * 2 * (2 * 2 * kv)
    assert two.collectives["all_to_all"] - local.collectives["all_to_all"] \
        == LAYERS * 2 * (2 * kv * 2)
    buffers = 3 * 2 * kv + 2 * (2 * kv * 2)
    assert two.parts["communication"] - local.parts["communication"] == buffers
    assert two.peak - local.peak == buffers
    assert any("by formula" in text and "ring attention" in text for text in two.formula)
    assert not local.formula


# ---------------------------------------------------------------- one build per layout


@pytest.mark.parametrize("layout", [
    Layout(fsdp=4, zero=1), Layout(fsdp=4, zero=2), Layout(fsdp=4, checkpoint="full"),
    Layout(dp=2, fsdp=2, offload=True)], ids=["zero1", "zero2", "full", "hsdp-offload"])
def test_a_reused_build_gives_a_fresh_builds_figures_to_the_byte(layout):
    """The Simulator builds a layout once and steps it at every length; each step must
    give exactly what a fresh build gives at that length (peak, parts, state, saved
    activations, collectives, host memory), in any order of lengths, the build being
    the same object throughout."""
    from archlint.parallel.simulate import Simulator

    graph = traced(SMALL)
    plan = make_plan(graph, layout, (256,))
    fresh = {n: simulate(graph, layout, plan, n, 1, "float32", "adam") for n in (256, 128)}
    with Simulator(graph, 1, "float32", "adam") as simulator:
        first = simulator.step(layout, plan, 256)
        built = simulator._held[1]
        reused = [simulator.step(layout, plan, n) for n in (128, 256)]
        assert simulator._held[1] is built
    assert first == fresh[256]
    assert reused == [fresh[128], fresh[256]]
    assert fresh[256].peak > fresh[128].peak
