"""Curves over n: grid, growth order, largest n within a budget, crossover."""

from __future__ import annotations

import math

from torch import nn

from archlint.cost import analyze
from archlint.cost.curves import crossover, grid, growth_exponent, largest_fitting
from archlint.cost.predict import CostModel
from archlint.settings import Settings
from archlint.units import MAX_SEQ_LEN
from tests.cost_models import KorthikantiBlock, SdpaBlock, graph_of, sequence_spec


def test_grid_halves_down_from_the_target():
    assert grid(8192) == (1024, 2048, 4096, 8192)
    assert grid(40) == (20, 40)
    assert grid(20) == (20,)


def test_growth_exponent_of_closed_forms():
    lengths = (1024, 2048, 4096)
    assert growth_exponent(lengths, tuple(500 + 3 * n for n in lengths)) == 1.0
    assert growth_exponent(lengths, tuple(500 + 7 * n * n for n in lengths)) == 2.0
    assert growth_exponent(lengths, (900, 900, 900)) == 0.0


def test_crossover_of_attention_against_the_rest():
    """4·d·n² attention FLOPs against 24·d²·n per-position FLOPs cross at n = 6·d."""
    d = 64
    lengths = (512, 1024, 2048)
    attention = tuple(4 * d * n * n for n in lengths)
    total = tuple(a + 24 * d * d * n for a, n in zip(attention, lengths))
    assert crossover(lengths, attention, total) == 6 * d
    assert crossover(lengths, (0, 0, 0), total) is None


def test_largest_fitting_matches_the_exact_root():
    """peak(n) = 1000 + 3n + 2n² against a budget: the answer is the floor of the root."""
    budget = 10**9
    calls = []

    def stages(n):
        calls.append(n)
        return {"backward:": 1000 + 3 * n + 2 * n * n, "optimizer:": 5000}

    known = {n: stages(n) for n in (256, 512, 1024)}
    calls.clear()
    best, exact = largest_fitting(stages, budget, known)
    root = (-3 + math.sqrt(9 - 8 * (1000 - budget))) / 4
    assert exact and best == math.floor(root)
    assert len(calls) <= 4                     # the quadratic guess lands at once


def test_largest_fitting_edges():
    assert largest_fitting(lambda n: {"": 10 * n}, 5, {}) == (0, True)
    assert largest_fitting(lambda n: {"": n}, 10**20, {4: {"": 4}}) == (MAX_SEQ_LEN, True)
    # a length where the model cannot run counts as not fitting
    assert largest_fitting(lambda n: None if n > 50 else {"": n}, 10**9, {})[0] == 50


def test_fits_up_to_is_checked_by_two_more_predictions():
    graph = graph_of(SdpaBlock(32, 4), sequence_spec(32))
    settings = Settings(seq_len=(1024,), memory=40_000_000)
    report = analyze(graph, settings)
    best = report.curve.fits_up_to
    model = CostModel(graph, settings)
    assert model.predict(best).peak <= settings.memory < model.predict(best + 1).peak


def test_growth_orders_and_crossover_of_a_block():
    """Fused attention keeps memory O(n) while its FLOPs are O(n²); the hand-written one
    stores n² scores. In inference the crossover is 6·d (no LM head here)."""
    d = 32
    fused = analyze(graph_of(SdpaBlock(d, 4), sequence_spec(d)),
                    Settings(seq_len=(2048,), mode="infer")).curve
    assert fused.memory_order == "O(n)" and fused.flops_order == "O(n²)"
    assert fused.crossover == 6 * d
    scores = analyze(graph_of(KorthikantiBlock(d, 4), sequence_spec(d)),
                     Settings(seq_len=(1024,), mode="infer")).curve
    assert scores.memory_order == "O(n²)"


def test_layers_without_attention_have_no_crossover():
    curve = analyze(graph_of(nn.Linear(16, 16), sequence_spec(16)),
                    Settings(seq_len=(512,))).curve
    assert curve.crossover is None and curve.flops_order == "O(n)"


def test_budget_search_stops_where_sizes_overflow():
    """A huge budget sends the search toward 2^40; hand-written attention's (n, n)
    scores overflow int64 long before, which counts as not fitting, not as an error."""
    graph = graph_of(KorthikantiBlock(16, 2, p=0.0), sequence_spec(16))
    curve = analyze(graph, Settings(seq_len=(256,), mode="infer", memory=10**30)).curve
    assert 2**20 < curve.fits_up_to < 2**32
