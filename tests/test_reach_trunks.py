"""Receptive fields of standard trunks at the user's target length (issue 8).

Each figure is derived by hand from the trunk's layer list (:func:`trunks.araujo`) and,
where the probe can see it, checked against the gradient support at the centre of an
input large enough not to be clipped: static support must *equal* gradient support.
Published: AlexNet 195 / stride 32, VGG-16 212 / stride 32, ResNet-18 435, ResNet-50 427
(Araujo et al., Distill 2019); wav2vec 2.0's feature encoder 400 samples / stride 320
(25 ms every 20 ms at 16 kHz, Baevski et al. 2020).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import trunks

from archlint import reach
from archlint.classify import classify
from archlint.load import load_module
from archlint.settings import Settings
from archlint.trace import trace_model


def _graph(model, target: int, trace_len: int = 40):
    return classify(trace_model(load_module(model), trace_len=trace_len, target_len=target))


def _check(model, layers, target: int, probe: bool = True, trace_len: int = 40):
    graph = _graph(model, target, trace_len)
    report = reach.analyze(graph, Settings(seq_len=(target,), dynamic=probe))
    field, jump = trunks.araujo(layers)
    for axis in report.axes:
        assert report.fields[axis].shape == "bounded"
        assert report.fields[axis].size.at(target) == field
    assert report.effective_stride == Fraction(jump)
    if probe:
        assert report.probe is not None, report.notes
        # the probe sees the whole window (longer than R), at the centre
        assert report.probe.probe_len > field
        assert report.probe.support == report.expected_support
        lo, hi = report.probe.support[report.axes[0]]
        assert hi - lo + 1 == field
    return graph, report


def test_alexnet_trunk_at_224():
    model, layers = trunks.alexnet_features()
    assert trunks.araujo(layers) == (195, 32)
    _check(model, layers, 224)


def test_vgg16_trunk_at_224_whatever_length_was_traced():
    model, layers = trunks.vgg16_features()
    assert trunks.araujo(layers) == (212, 32)
    graph, _ = _check(model, layers, 224)
    # at n=40 four poolings leave an axis of 2 that a 3x3 conv covers: traced again
    assert graph.trace_len > 40
    assert any("traced again" in note for note in graph.frontend_notes)
    _check(model, layers, 224, probe=False, trace_len=224)


def test_resnet18_trunk_static():
    model, layers = trunks.resnet18_trunk()
    assert trunks.araujo(layers) == (435, 32)
    _check(model, layers, 224, probe=False)


@pytest.mark.models
def test_resnet18_trunk_probe_sees_zero_init_residuals():
    """zero_init_residual: the last BN of each block starts at 0; re-seeded for the probe
    the gradient reaches all 435 positions."""
    model, layers = trunks.resnet18_trunk()
    _check(model, layers, 224)


@pytest.mark.models
def test_resnet50_trunk():
    model, layers = trunks.resnet50_trunk()
    assert trunks.araujo(layers) == (427, 32)
    _check(model, layers, 224, probe=False)
    _check(model, layers, 224, probe=False, trace_len=224)


@pytest.mark.models
def test_mobilenet_v2_trunk():
    model, layers = trunks.mobilenet_v2_features()
    field, jump = trunks.araujo(layers)
    assert jump == 32
    _check(model, layers, 224, probe=False)
    _check(model, layers, 224, probe=False, trace_len=224)


def test_wav2vec2_feature_encoder_layer_norm():
    model = trunks.Wav2Vec2FeatureEncoder("layer")
    assert trunks.araujo(model.windows()) == (400, 320)
    _check(model, model.windows(), 16000)


def test_wav2vec2_feature_encoder_group_norm_reads_everything():
    model = trunks.Wav2Vec2FeatureEncoder("group")
    graph = _graph(model, 16000)
    report = reach.analyze(graph, Settings(seq_len=(16000,), dynamic=False))
    assert report.fields["n"].shape == "global"
    assert report.fields["n"].size.at(16000) == 16000
