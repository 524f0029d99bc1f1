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
from archlint.load.structured import Template, flat_call, flatten, refuse_changing

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


def from_example_input(function: Callable[..., Any], model: nn.Module | None = None
                       ) -> tuple[InputSpec, Template | None]:
    """An InputSpec from the user's ``example_input(seq_len, batch)``.

    It may return one tensor, a tuple or list of positional arguments, a dict of keyword
    arguments (how Hugging Face models are called), or both as ``(args, kwargs)``.
    Keyword arguments that name positional parameters of ``forward`` are passed
    positionally (gaps filled with the parameters' defaults), so every consumer varies
    one tuple of arguments. The sequence dimension of each argument is found by building
    it at two lengths and seeing which dimension follows; a model attribute ``seq_dim``
    (an int) chooses it where several follow (a pairwise ``(B, n, n)`` input).

    Where a tensor that follows ``seq_len`` is hidden from that tuple (inside a
    dataclass, tuple or dict passed as one argument, or taken only by ``**kwargs``), the
    whole call is flattened (:mod:`archlint.load.structured`): the spec's arguments are
    then every tensor of the call, and the returned template rebuilds the call from them.
    """
    plan = _CallPlan(model)
    try:
        with stage("calling example_input(seq_len, batch)"):
            short_value, long_value = function(16, 1), function(24, 1)
            plan.learn(short_value)
            short, long_ = plan.args(short_value), plan.args(long_value)
    except ArchlintError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's function
        raise ArchlintError(
            f"example_input(seq_len, batch) raised {describe(exc)}; "
            "it must return the forward arguments for any seq_len") from exc
    declared = getattr(model, "seq_dim", None) if model is not None else None
    if declared is not None and (isinstance(declared, bool) or not isinstance(declared, int)):
        raise ArchlintError(f"{type(model).__name__}.seq_dim = {declared!r}: it must be an "
                            "int, the sequence dimension of the forward's tensors")
    template = None
    if plan.hidden(short, long_, plan.kwargs_at(short_value), plan.kwargs_at(long_value)):
        template, short_tensors = flatten(*plan.parts(short_value))
        long_template, long_tensors = flatten(*plan.parts(long_value))
        refuse_changing(template, long_template)
        short, long_ = tuple(short_tensors), tuple(long_tensors)

        def make(n: int, b: int) -> tuple[Any, ...]:
            return tuple(flatten(*plan.parts(function(n, b)))[1])
        kwargs: dict[str, Any] = {}
    else:
        def make(n: int, b: int) -> tuple[Any, ...]:
            return plan.args(function(n, b))
        kwargs = plan.kwargs_at(short_value)
    seq_dims = tuple(_moving_dim(a, c, declared) for a, c in zip(short, long_))
    if all(dim is None for dim in seq_dims):
        raise ArchlintError(
            "example_input(seq_len, batch) returns tensors whose shape does not follow "
            "seq_len; make the sequence dimension equal to seq_len")
    shapes = ", ".join(str(tuple(a.shape)) for a in short if isinstance(a, torch.Tensor))
    inside = " (flattened from its structures)" if template is not None else ""
    return InputSpec("custom", f"example_input: {shapes} at n=16{inside}", make, seq_dims,
                     kwargs=kwargs), template


class _CallPlan:
    """How the value ``example_input`` returns becomes ``forward``'s arguments."""

    def __init__(self, model: nn.Module | None) -> None:
        self.parameters: list[inspect.Parameter] = []
        if model is not None:
            try:
                self.parameters = [
                    p for p in inspect.signature(model.forward).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                pass

    @staticmethod
    def parts(value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                raise ArchlintError("example_input(seq_len, batch) returns a dict whose keys "
                                    "are not all strings; a dict holds keyword arguments")
            return (), dict(value)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], (tuple, list)) \
                and isinstance(value[1], dict):
            return tuple(value[0]), dict(value[1])
        if isinstance(value, (tuple, list)):
            return tuple(value), {}
        return (value,), {}

    def learn(self, value: Any) -> None:
        self.parts(value)

    def _bound(self, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = self.parts(value)
        if not kwargs:
            return args, {}
        names = [p.name for p in self.parameters]
        wanted = [names.index(k) for k in kwargs if k in names]
        if not wanted or min(wanted) < len(args):
            return args, kwargs
        out, rest = list(args), dict(kwargs)
        for parameter in self.parameters[len(args):max(wanted) + 1]:
            if parameter.name in rest:
                out.append(rest.pop(parameter.name))
            elif parameter.default is not parameter.empty:
                out.append(parameter.default)
            else:
                raise ArchlintError(
                    f"example_input(seq_len, batch) does not give forward's argument "
                    f"{parameter.name!r}, which has no default")
        return tuple(out), rest

    def args(self, value: Any) -> tuple[Any, ...]:
        return self._bound(value)[0]

    def kwargs_at(self, value: Any) -> dict[str, Any]:
        return self._bound(value)[1]

    def hidden(self, short: tuple, long_: tuple, short_kwargs: dict,
               long_kwargs: dict) -> bool:
        """True when a tensor that follows seq_len is out of reach of the positional
        arguments: inside a structure (a tuple, dict or dataclass passed as one
        argument), or in a keyword argument ``forward`` takes by keyword only."""
        if any(not isinstance(a, torch.Tensor) and _follows(a, c)
               for a, c in zip(short, long_)):
            return True
        return any(key in long_kwargs and _follows(value, long_kwargs[key])
                   for key, value in short_kwargs.items())


def _follows(a: Any, b: Any) -> bool:
    """True when some tensor inside ``a`` changes shape where ``b`` has it."""
    from torch.utils._pytree import tree_flatten

    leaves_a, spec_a = tree_flatten(_as_tree(a))
    leaves_b, spec_b = tree_flatten(_as_tree(b))
    if spec_a != spec_b:
        return True
    return any(isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
               and x.shape != y.shape for x, y in zip(leaves_a, leaves_b))


def _as_tree(value: Any) -> Any:
    """Dataclasses as dicts of their fields, so pytree sees their tensors."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_tree(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_as_tree(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_tree(item) for key, item in value.items()}
    return value


def _moving_dim(a: Any, b: Any, declared: int | None = None) -> int | None:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() != b.dim():
        return None
    if declared is not None and -a.dim() <= declared < a.dim() \
            and a.shape[declared] != b.shape[declared]:
        return declared % a.dim()
    for dim, (x, y) in enumerate(zip(a.shape, b.shape)):
        if x == 16 and y == 24:
            return dim
    return None


def infer_input(model: nn.Module, example: Callable[..., Any] | None,
                label: str) -> tuple[InputSpec, nn.Module]:
    """The input spec, and the module to call with it: from ``example_input`` if given,
    else the first candidate that runs. The module is the model itself, or a
    :class:`~archlint.load.structured.FlatCall` of it where ``example_input`` hides its
    tensors in structures.

    Every candidate is tried at :data:`VALIDATION_LEN` first; only when none runs are they
    tried at doubled lengths (up to ``MAX_TRACE_LEN``, or ``MAX_TRACE_SIDE`` for images):
    a model that downsamples a lot rejects short inputs. The length that ran becomes the
    spec's ``min_len``, where tracing starts. A TorchScript module is refused whatever
    is declared: none of torch.export, symbolic tracing or module hooks sees its layers,
    so every figure would describe an empty model."""
    if isinstance(model, torch.jit.ScriptModule):
        raise ArchlintError(
            f"{label}: is a TorchScript module (torch.jit.script/trace), whose layers "
            "archlint cannot trace; point archlint at the nn.Module before scripting "
            f"(the {getattr(model, 'original_name', 'module')} instance itself, not "
            "torch.jit.script of it)")
    if example is not None:
        spec, template = from_example_input(example, model)
        specs = [with_call_convention(spec, model)]
        if template is not None:
            model = flat_call(model, template)
    else:
        specs = [with_call_convention(spec, model) for spec in candidates(model)]
    if not specs:
        raise ArchlintError(f"{label}: {_why_not_inferred(model)}define "
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
            return replace(spec, min_len=ladder[step]), model
    length, exc = first[0]
    tried = ", ".join(str(n) for n in ladders[0])
    hint = "" if example is not None else "; or define example_input(seq_len, batch)"
    raise ArchlintError(
        f"{label}: forward raised {describe(exc)} with input "
        f"{specs[0].description} at n={length} (tried n={tried}){hint}") from exc


def _why_not_inferred(model: nn.Module) -> str:
    """Why no first layer told the input: a dynamically quantized model has layers of
    its own types."""
    for name, module in model.named_modules():
        if type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")):
            return (f"has quantized layers ({name or 'the model'}: "
                    f"{type(module).__module__}.{type(module).__name__}), whose input "
                    "cannot be inferred; check it with --mode infer (quantized weights take "
                    "no gradients) and ")
    return "cannot infer the input from the first layer; "
