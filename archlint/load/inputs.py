"""Inferring the model's input at any length from its first layer.

The first leaf module (in registration order) suggests the layout: ``Embedding`` ->
token ids ``(B, n)`` below its vocabulary; ``Conv1d`` -> ``(B, C, n)`` (and a raw
waveform ``(B, n)`` when it has one input channel); ``Linear``, ``RNN``/``LSTM``/``GRU``
and attention -> ``(B, n, d)`` (``(n, B, d)`` unless ``batch_first``); ``Conv2d`` -> an
image ``(B, C, n, n)``. Each candidate is tried with one small forward pass at
:data:`VALIDATION_LEN`; the first that runs wins. A file can instead define
``example_input(seq_len, batch)`` returning the forward arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from archlint.errors import ArchlintError
from archlint.graph import InputSpec
from archlint.guard import describe, stage

#: Length of the validation forward pass. Unusual on purpose, so that it is unlikely to
#: equal a channel count and a wrong layout fails loudly instead of running by accident.
VALIDATION_LEN = 40
#: Shortest raw waveform that survives a wav2vec-style feature extractor (stride 320).
WAVEFORM_MIN_LEN = 4000


def _tokens(vocab: int) -> InputSpec:
    return InputSpec(
        "tokens", f"token ids (B, n) < {vocab}",
        lambda n, b: (torch.randint(0, vocab, (b, n)),), (1,))


def _channels_first(channels: int) -> InputSpec:
    return InputSpec(
        "channels", f"float (B, {channels}, n)",
        lambda n, b: (torch.randn(b, channels, n),), (2,))


def _sequence(features: int, batch_first: bool = True) -> InputSpec:
    if batch_first:
        return InputSpec(
            "sequence", f"float (B, n, {features})",
            lambda n, b: (torch.randn(b, n, features),), (1,))
    return InputSpec(
        "sequence", f"float (n, B, {features}) (batch_first=False)",
        lambda n, b: (torch.randn(n, b, features),), (0,))


def _waveform() -> InputSpec:
    return InputSpec(
        "waveform", "raw waveform (B, n)", lambda n, b: (torch.randn(b, n),), (1,),
        min_len=WAVEFORM_MIN_LEN)


def _image(channels: int) -> InputSpec:
    return InputSpec(
        "image", f"image (B, {channels}, n, n)",
        lambda n, b: (torch.randn(b, channels, n, n),), (2, 3))


def candidates(model: nn.Module) -> list[InputSpec]:
    """Input layouts suggested by the first leaf module that has an opinion."""
    for module in model.modules():
        specs = _suggest(module)
        if specs:
            return specs
    return []


def _suggest(module: nn.Module) -> list[InputSpec]:
    if isinstance(module, nn.Embedding):
        return [_tokens(module.num_embeddings)]
    if isinstance(module, nn.Conv1d):
        specs = [_channels_first(module.in_channels), _sequence(module.in_channels)]
        return specs + [_waveform()] if module.in_channels == 1 else specs
    if isinstance(module, nn.Conv2d):
        return [_image(module.in_channels)]
    if isinstance(module, nn.RNNBase):
        return [_sequence(module.input_size, module.batch_first)]
    if isinstance(module, (nn.RNNCellBase,)):
        return [_sequence(module.input_size), _sequence(module.input_size, False)]
    if isinstance(module, nn.MultiheadAttention):
        return [_sequence(module.embed_dim, module.batch_first)]
    if isinstance(module, nn.Linear):
        return [_sequence(module.in_features), _channels_first(module.in_features)]
    if isinstance(module, (nn.LayerNorm,)) and len(module.normalized_shape) == 1:
        return [_sequence(module.normalized_shape[0])]
    return []


def with_call_convention(spec: InputSpec, model: nn.Module) -> InputSpec:
    """Ask for plain tensor outputs when ``forward`` offers the switches (HF models)."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return spec
    kwargs = {key: False for key in ("use_cache", "return_dict") if key in parameters}
    if not kwargs:
        return spec
    return InputSpec(spec.kind, spec.description, spec.make, spec.seq_dims,
                     kwargs={**spec.kwargs, **kwargs}, min_len=spec.min_len)


def from_example_input(function: Callable[..., Any]) -> InputSpec:
    """An InputSpec from the user's ``example_input(seq_len, batch)``.

    The sequence dimension of each argument is found by building it at two lengths and
    seeing which dimension follows.
    """
    def make(n: int, b: int) -> tuple[Any, ...]:
        args = function(n, b)
        return tuple(args) if isinstance(args, (tuple, list)) else (args,)

    try:
        with stage("calling example_input(seq_len, batch)"):
            short, long_ = make(16, 1), make(24, 1)
    except ArchlintError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's function
        raise ArchlintError(
            f"example_input(seq_len, batch) raised {describe(exc)}; "
            "it must return the forward arguments for any seq_len") from exc
    seq_dims = tuple(_moving_dim(a, c) for a, c in zip(short, long_))
    if all(dim is None for dim in seq_dims):
        raise ArchlintError(
            "example_input(seq_len, batch) returns tensors whose shape does not follow "
            "seq_len; make the sequence dimension equal to seq_len")
    shapes = ", ".join(str(tuple(a.shape)) for a in short if isinstance(a, torch.Tensor))
    return InputSpec("custom", f"example_input: {shapes} at n=16", make, seq_dims)


def _moving_dim(a: Any, b: Any) -> int | None:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() != b.dim():
        return None
    for dim, (x, y) in enumerate(zip(a.shape, b.shape)):
        if x == 16 and y == 24:
            return dim
    return None


def infer_input(model: nn.Module, example: Callable[..., Any] | None,
                label: str) -> InputSpec:
    """The input spec: from ``example_input`` if given, else the first candidate that runs.

    Every candidate is tried at :data:`VALIDATION_LEN` first; only when none runs are they
    tried at doubled lengths (up to ``MAX_TRACE_LEN``, or ``MAX_TRACE_SIDE`` for images):
    a model that downsamples a lot rejects short inputs. The length that ran becomes the
    spec's ``min_len``, where tracing starts."""
    if example is not None:
        specs = [with_call_convention(from_example_input(example), model)]
    else:
        specs = [with_call_convention(spec, model) for spec in candidates(model)]
    if not specs:
        raise ArchlintError(
            f"{label}: cannot infer the input from the first layer; define "
            "example_input(seq_len, batch) in the model file")
    from archlint.trace.length import MAX_TRACE_LEN, MAX_TRACE_SIDE, candidate_lengths

    ladders = [candidate_lengths(max(VALIDATION_LEN, spec.min_len),
                                 MAX_TRACE_SIDE if spec.spatial else MAX_TRACE_LEN)
               for spec in specs]
    first: list[tuple[int, Exception] | None] = [None] * len(specs)
    for step in range(max(len(ladder) for ladder in ladders)):
        for index, (spec, ladder) in enumerate(zip(specs, ladders)):
            if step >= len(ladder):
                continue
            try:
                with stage(f"running forward of {label} at n={ladder[step]} to check its "
                           "input"), torch.no_grad():
                    model(*spec.make(ladder[step], 1), **spec.kwargs)
            except ArchlintError:
                raise
            except Exception as exc:  # noqa: BLE001 - the user's forward
                first[index] = first[index] or (ladder[step], exc)
                continue
            return replace(spec, min_len=ladder[step])
    length, exc = first[0]
    tried = ", ".join(str(n) for n in ladders[0])
    hint = "" if example is not None else "; or define example_input(seq_len, batch)"
    raise ArchlintError(
        f"{label}: forward raised {describe(exc)} with input "
        f"{specs[0].description} at n={length} (tried n={tried}){hint}") from exc
