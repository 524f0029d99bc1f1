"""FLOPs against closed forms, and against fvcore where fvcore counts the op."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from archlint.cost.predict import CostModel
from archlint.settings import Settings
from tests.cost_models import KorthikantiBlock, SdpaBlock, graph_of, sequence_spec


def predicted(module, spec, n, **settings):
    return CostModel(graph_of(module, spec), Settings(**settings)).predict(n)


def test_linear_is_2_n_din_dout_forward_and_twice_that_backward():
    """Input without grad: backward computes only the weight gradient (same FLOPs as
    forward); a second Linear also sends the gradient on (twice the forward)."""
    n, b = 100, 3
    one = predicted(nn.Linear(64, 32), sequence_spec(64), n, batch=b)
    assert one.flops_forward == 2 * b * n * 64 * 32
    assert one.flops_backward == 2 * b * n * 64 * 32
    two = predicted(nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 16)), sequence_spec(64), n)
    assert two.flops_forward == 2 * n * (64 * 32 + 32 * 16)
    assert two.flops_backward == 2 * n * 64 * 32 + 2 * 2 * n * 32 * 16


def test_cpu_sdpa_counts_4_n2_d_per_layer():
    """PyTorch's counter sees 0 for the CPU flash kernel; archlint adds QKᵀ and A·V,
    4·B·n²·d forward, and the flash backward's 5 matmuls: 10·B·n²·d."""
    n, b, d, heads = 200, 2, 64, 4
    p = predicted(SdpaBlock(d, heads), sequence_spec(d), n, batch=b)
    per_position = 2 * (3 * d * d + d * d + 4 * d * d + 4 * d * d)      # qkv, proj, fc1, fc2
    assert p.flops_forward == b * n * per_position + 4 * b * n * n * d
    assert p.attention_flops == 4 * b * n * n * d + 10 * b * n * n * d


def test_lstm_counts_4_gates():
    """nn.LSTM on CPU is one mkldnn_rnn_layer per layer and direction (0 upstream):
    2·n·B·4H·(I + H) forward, twice that backward."""
    n, b, i, h = 120, 2, 16, 32
    lstm = nn.LSTM(i, h, num_layers=2, bidirectional=True, batch_first=True)
    p = predicted(lstm, sequence_spec(i), n, batch=b)
    first = 2 * n * b * 4 * h * (i + h)                  # per direction
    second = 2 * n * b * 4 * h * (2 * h + h)             # input is both directions: 2H
    assert p.flops_forward == 2 * (first + second)
    assert p.flops_backward == 2 * p.flops_forward


def test_gru_unrolled_by_aten_is_counted_per_step():
    """nn.GRU on CPU runs as per-step matmuls: 2·n·B·3H·(I + H) forward (the input
    projection for all steps at once, the hidden one per step)."""
    n, b, i, h = 40, 2, 16, 32
    p = predicted(nn.GRU(i, h, batch_first=True), sequence_spec(i), n, batch=b, mode="infer")
    assert p.flops_forward == 2 * n * b * 3 * h * (i + h)


def test_encoder_fast_path_formula():
    """The eval fast path is one fused op per layer (0 upstream):
    8·B·n·E² projections + 4·B·n²·E attention + 4·B·n·E·F feed-forward."""
    n, b, e, f, layers = 150, 2, 64, 128, 2
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(e, 4, f, batch_first=True), layers)
    p = predicted(encoder, sequence_spec(e), n, batch=b, mode="infer")
    per_layer = 8 * b * n * e * e + 4 * b * n * n * e + 4 * b * n * e * f
    assert p.flops_forward == layers * per_layer
    assert p.attention_flops == layers * 4 * b * n * n * e


@pytest.mark.filterwarnings("ignore")
def test_matches_fvcore_where_fvcore_counts():
    """fvcore counts one multiply-add as one FLOP and sees the hand-written attention's
    matmuls (not SDPA): twice its matmul count is archlint's forward count (fvcore also
    counts 5 FLOPs per LayerNorm element, which PyTorch's convention leaves out)."""
    from fvcore.nn import FlopCountAnalysis

    n, d = 96, 64
    block = KorthikantiBlock(d, 4).eval()
    x = torch.randn(1, n, d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(block, (x,))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    assert by_op.pop("layer_norm") == 2 * 5 * n * d
    assert set(by_op) == {"linear", "matmul"}
    mac = sum(by_op.values())
    assert predicted(block, sequence_spec(d), n, mode="infer").flops_forward == 2 * mac


def test_module_totals_are_inclusive_and_sum_to_the_model():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    p = predicted(model, sequence_spec(8), 10, mode="infer")
    assert p.module_flops["0"] == 2 * 10 * 8 * 16
    assert p.module_flops["2"] == 2 * 10 * 16 * 4
    assert p.module_flops[""] == p.flops_forward == p.module_flops["0"] + p.module_flops["2"]
