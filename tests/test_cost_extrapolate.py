"""Loop-over-time models past the op budget: the peak and FLOPs extrapolated from three
fake runs, checked against a fourth, and the method text says which lengths and how well.

The hand-written ``nn.LSTMCell`` loop dispatches a fixed number of ops per position, so
its step is exactly linear in n: the extrapolation must equal a direct fake run at a
length the direct run can still afford (a second method), and the check's length in the
text is 4× the first fit length, whatever happened in the retry.
"""

from __future__ import annotations

import re

import pytest

import archlint.cost.predict as predict
from archlint.cost.predict import CostModel
from archlint.settings import make_settings
from tests.conftest import traced

TARGET = "fixtures/rnn_cell_loop.py"


def _model(mode: str = "infer") -> CostModel:
    return CostModel(traced(TARGET), make_settings(mode=mode, seq_len="100k"))


def _lengths(method: str) -> tuple[list[int], int, str]:
    match = re.fullmatch(r"extrapolated from fake runs at n=([\d, ]+) \(peak at n=(\d+) "
                         r"(within|off by more than .* off by) [\d.]+%\)", method)
    assert match, method
    return [int(n) for n in match.group(1).split(", ")], int(match.group(2)), match.group(3)


def test_a_long_loop_is_extrapolated_and_agrees_with_a_direct_run(monkeypatch):
    model = _model()
    n = 100
    while model.ops(n, "infer") <= predict.OP_BUDGET:          # just past the budget
        n += 100
    extrapolated = model.predict(n)
    lengths, check, verdict = _lengths(extrapolated.method)
    assert lengths == [lengths[0], 2 * lengths[0], 3 * lengths[0]] and check == 4 * lengths[0]
    assert verdict == "within"
    monkeypatch.setattr(predict, "OP_BUDGET", 10**9)            # afford the direct run
    direct = _model().predict(n)
    assert direct.method == "fake tensors"
    assert extrapolated.peak == pytest.approx(direct.peak, rel=0.005)
    assert extrapolated.flops == pytest.approx(direct.flops, rel=0.005)


def test_a_fit_that_misses_says_so_and_names_the_length_it_checked(monkeypatch):
    monkeypatch.setattr(predict, "FIT_TOLERANCE", -1.0)          # every check misses
    method = _model().predict(100_000).method
    lengths, check, verdict = _lengths(method)
    assert check == 4 * lengths[0]                               # not twice that length
    assert verdict.startswith("off by more than")
