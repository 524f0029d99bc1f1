"""Peak memory on fake tensors against closed forms and against real CPU runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlint.cost.predict import CostModel
from archlint.profile.measure import measure_step
from archlint.settings import Settings
from tests.cost_models import (
    KorthikantiBlock,
    SdpaBlock,
    channels_spec,
    graph_of,
    sequence_spec,
    token_spec,
)


def predicted(module, spec, n, **settings):
    return CostModel(graph_of(module, spec), Settings(**settings)).predict(n)


def test_parameters_gradients_and_adam_state_are_closed_forms():
    """At the optimizer step: P·4 bytes of weights, P·4 of gradients, 2·P·4 of Adam
    moments plus one 4-byte step counter per parameter tensor."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
    count = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    stage = predicted(model, sequence_spec(64), 8).phases["optimizer:"]
    assert stage.parts["parameters"] == 4 * count
    assert stage.parts["gradients"] == 4 * count
    assert stage.parts["optimizer"] == 2 * 4 * count + 4 * tensors


def test_sgd_keeps_no_state_and_inference_keeps_no_gradients():
    model = nn.Linear(32, 32)
    assert predicted(model, sequence_spec(32), 8, optimizer="sgd").memory.parts["optimizer"] == 0
    infer = predicted(model, sequence_spec(32), 8, mode="infer").memory.parts
    assert infer["gradients"] == infer["optimizer"] == 0
    assert infer["parameters"] == 4 * (32 * 32 + 32)


def test_tied_weights_are_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(100, 16)
            self.head = nn.Linear(16, 100, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, tokens):
            return self.head(self.embed(tokens))

    parts = predicted(Tied(), token_spec(100), 8, mode="infer").memory.parts
    assert parts["parameters"] == 100 * 16 * 4


def test_korthikanti_activation_memory():
    """Saved activations of one layer in 16-bit = s·b·h·(34 + 5·a·s/h) bytes
    (Korthikanti et al. 2022, eq. 2) with 1-byte dropout masks. Two CPU differences,
    each a closed form: ATen's CPU dropout keeps its mask in the input dtype (2 bytes,
    +1 byte for each of the a·s²·b attention and 2·s·b·h residual mask elements), and
    the two LayerNorms also save mean and rstd (2 · 2 · s·b elements of 2 bytes)."""
    s, b, h, a = 96, 2, 64, 4
    block = KorthikantiBlock(h, a).to(torch.bfloat16)
    model = CostModel(graph_of(block, sequence_spec(h, torch.bfloat16)), Settings(batch=b))
    tracker, out = _forward_only(model, s)
    saved = tracker.totals["activations"] + tracker.totals["attention_scores"]
    paper = s * b * h * (34 + 5 * a * s // h)
    cpu_masks = a * s * s * b + 2 * s * b * h
    assert saved == paper + cpu_masks + 2 * 2 * s * b * 2
    # softmax output, dropout mask and dropout output: 3 · a·s²·b elements of 2 bytes
    assert tracker.totals["attention_scores"] == 3 * a * s * s * b * 2


def _forward_only(model: CostModel, n: int):
    """Run the forward of a training step under the tracker; return it after forward."""
    from torch.func import functional_call

    from archlint.cost.fake import fake_model, make_inputs, preserved
    from archlint.cost.trackers import new_tracker

    fake = fake_model(model.graph.module)
    tracker = new_tracker(model.pairwise_rule(n))
    tracker.register_state(fake.parameters, "Parameter")
    with preserved(model.graph.module, True), fake.mode, tracker, tracker.saved_tensor_hooks():
        args, kwargs = make_inputs(model.graph.input_spec, n, model.settings.batch)
        out = functional_call(model.graph.module, fake.state, args, kwargs)
        del args, kwargs
    return tracker, out


def test_fused_sdpa_keeps_no_pairwise_tensor_and_hand_written_attention_does():
    """B·h·n² float32 scores appear only for the hand-written softmax(QKᵀ)."""
    n, b, h, a = 128, 1, 64, 4
    fused = predicted(SdpaBlock(h, a), sequence_spec(h), n)
    assert fused.memory.parts["attention_scores"] == 0
    tracker, _ = _forward_only(CostModel(graph_of(KorthikantiBlock(h, a, p=0.0),
                                                  sequence_spec(h)), Settings()), n)
    # at the end of the forward one float32 (b, a, n, n) tensor is alive: the softmax
    # output, saved by softmax itself and by probs @ v (p=0 dropout returns its input)
    assert tracker.totals["attention_scores"] == b * a * n * n * 4


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("make", [
    lambda: SdpaBlock(64, 4),
    lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), 2),
    lambda: nn.Sequential(nn.Conv1d(8, 32, 5, padding=2), nn.ReLU(),
                          nn.Conv1d(32, 8, 3, dilation=2, padding=2)),
], ids=["sdpa-block", "stock-encoder", "conv1d"])
def test_prediction_equals_a_real_cpu_run(make, mode):
    """Fake tensors + PyTorch's own accounting reproduce a real step's peak to the byte
    (the fused encoder fast path, flash SDPA buffers and conv backends included)."""
    torch.manual_seed(0)
    module = make()
    spec = sequence_spec(64) if not isinstance(module, nn.Sequential) else \
        channels_spec(8)
    settings = Settings(mode=mode)
    for n in (96, 200):
        prediction = CostModel(graph_of(module, spec), settings).predict(n)
        assert prediction.peak == measure_step(module, spec, n, settings).peak


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_lstm_prediction_within_two_percent_of_a_real_run(mode):
    """oneDNN's LSTM workspace and scratchpad are calibrated at other lengths (page
    rounding makes the extrapolation inexact by a few kB)."""
    torch.manual_seed(0)
    module = nn.LSTM(16, 32, num_layers=2, batch_first=True)
    spec, settings = sequence_spec(16), Settings(mode=mode)
    for n in (150, 300):
        prediction = CostModel(graph_of(module, spec), settings).predict(n)
        real = measure_step(module, spec, n, settings).peak
        assert abs(prediction.peak - real) / real < 0.02


def test_fallback_ledger_agrees_with_memtracker():
    torch.manual_seed(0)
    graph = graph_of(SdpaBlock(32, 4), sequence_spec(32))
    primary = CostModel(graph, Settings()).predict(64)
    fallback = CostModel(graph, Settings(), fallback=True).predict(64)
    assert fallback.peak == primary.peak
    assert fallback.memory.parts == primary.memory.parts


def test_module_state_written_in_forward_is_restored():
    """A forward that stores a tensor on the module must not leave a fake tensor there."""
    class Stateful(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8, 8)
            self.memory = None

        def forward(self, x):
            self.memory = self.linear(x)
            return self.memory

    module = Stateful()
    predicted(module, sequence_spec(8), 32)
    assert module.memory is None and module.training


class _Checkpointed(nn.Module):
    """Three Korthikanti blocks, each under torch.utils.checkpoint (non-reentrant)."""

    def __init__(self, checkpointed: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(KorthikantiBlock(32, 4, p=0.0) for _ in range(3))
        self.checkpointed = checkpointed

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointed else block(x)
        return x


def test_activation_checkpointing_is_predicted_like_a_plain_model():
    """Within 0.5% of a real step (a plain model is exact; the recompute's order of
    frees differs by a few kB), the user's parameters untouched. Backward FLOPs are the
    plain backward's plus one more forward of every block but its last Linear: the
    recompute stops once backward has every tensor it saved (PyTorch's early stop), and
    fc2's output is saved by nothing: 2·n·4h·h = 2·256·128·32 FLOPs per block."""
    torch.manual_seed(0)
    spec, settings = sequence_spec(32), Settings()
    module = _Checkpointed()
    for n in (256, 512):
        prediction = CostModel(graph_of(module, spec), settings).predict(n)
        real = measure_step(module, spec, n, settings).peak
        assert abs(prediction.peak - real) / real < 0.005, (prediction.peak, real)
    assert all(p.grad is None for p in module.parameters())
    plain = _Checkpointed(checkpointed=False)
    plain.load_state_dict(module.state_dict())
    with_checkpoint = CostModel(graph_of(module, spec), settings).predict(256)
    without = CostModel(graph_of(plain, spec), settings).predict(256)
    assert with_checkpoint.flops_forward == without.flops_forward
    fc2 = 3 * 2 * 256 * 128 * 32
    assert with_checkpoint.flops_backward == \
        without.flops_backward + without.flops_forward - fc2
    assert set(with_checkpoint.module_flops) == set(without.module_flops)
    assert with_checkpoint.peak < 0.7 * without.peak
