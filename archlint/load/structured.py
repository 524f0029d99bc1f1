"""Forward arguments held inside structures, seen by archlint as flat tensors.

Every stage varies the model's input one positional tensor at a time (its sequence axis
is ``InputSpec.seq_dims[i]``). A model called as ``forward(batch)`` with ``batch`` a
dataclass, a tuple or a dict of tensors, or as ``forward(**inputs)``, hides its tensors
from that: the tensor whose axis follows ``seq_len`` is not an argument of its own.

:func:`flatten` splits what ``example_input`` returns into a :class:`Template` (the
structure, with every tensor replaced by a numbered slot and every other value kept) and
the tensors in slot order; :class:`FlatCall` is the user's model with a ``forward`` that
takes those tensors positionally, rebuilds the structure and calls the model's own
``forward``. FlatCall shares the model's submodules, parameters and buffers (the same
dicts, not copies), so every module path, parameter name and source location is the
model's own, and the class it reports is the model's class name.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from archlint.errors import ArchlintError


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Where the ``index``-th flat tensor goes back into the structure."""

    index: int


@dataclasses.dataclass(frozen=True)
class Template:
    """The structure of ``(args, kwargs)`` with tensors replaced by :class:`_Slot`."""

    args: Any
    kwargs: Any

    def rebuild(self, tensors: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return tuple(_fill(self.args, tensors)), dict(_fill(self.kwargs, tensors))


def flatten(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Template, list[Any]]:
    """The template of ``(args, kwargs)`` and its tensors in the order of their slots."""
    tensors: list[Any] = []
    return Template(_hollow(list(args), tensors), _hollow(dict(kwargs), tensors)), tensors


def _hollow(value: Any, tensors: list[Any]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return _Slot(len(tensors) - 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (_Dataclass(value), {f.name: _hollow(getattr(value, f.name), tensors)
                                    for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {key: _hollow(item, tensors) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_hollow(item, tensors) for item in value]
        return items if type(value) is list else (_Sequence(type(value)), items)
    return value


class _Dataclass:
    """A dataclass instance's prototype: rebuilt by copying it and setting its fields
    (works for frozen dataclasses and fields outside ``__init__``)."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def build(self, fields: dict[str, Any]) -> Any:
        built = copy.copy(self.instance)
        for name, value in fields.items():
            object.__setattr__(built, name, value)
        return built

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Dataclass) and type(other.instance) is type(self.instance)

    __hash__ = None  # type: ignore[assignment]


class _Sequence:
    """A tuple (or namedtuple) type to rebuild."""

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def build(self, items: list[Any]) -> Any:
        return self.kind(*items) if hasattr(self.kind, "_fields") else self.kind(items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Sequence) and other.kind is self.kind

    __hash__ = None  # type: ignore[assignment]


def _fill(value: Any, tensors: tuple[Any, ...]) -> Any:
    if isinstance(value, _Slot):
        return tensors[value.index]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], _Dataclass):
        return value[0].build({k: _fill(v, tensors) for k, v in value[1].items()})
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], _Sequence):
        return value[0].build([_fill(item, tensors) for item in value[1]])
    if isinstance(value, dict):
        return {key: _fill(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, tensors) for item in value]
    return value


def same_structure(a: Template, b: Template) -> bool:
    """True when two templates differ at most in the values of their constants' tensors."""
    try:
        return a == b
    except Exception:  # noqa: BLE001 - a user's constant whose == raises
        return False


class FlatCall(nn.Module):
    """The user's model, called with the tensors of its structured arguments flat.

    Not a container of the model: it holds the model outside its module tree and shares
    the model's ``_modules``, ``_parameters`` and ``_buffers``, so ``named_modules()``,
    ``named_parameters()`` and the traced graph's module paths are the model's own.
    """

    def __init__(self, model: nn.Module, template: Template) -> None:
        super().__init__()
        object.__setattr__(self, "inner", model)
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "_modules", model._modules)
        object.__setattr__(self, "_parameters", model._parameters)
        object.__setattr__(self, "_buffers", model._buffers)
        self.training = model.training

    def forward(self, *tensors: Any, **extra: Any) -> Any:
        args, kwargs = self.template.rebuild(tensors)
        return self.inner.forward(*args, **{**kwargs, **extra})

    def train(self, mode: bool = True) -> FlatCall:
        self.inner.training = mode
        return super().train(mode)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("inner")
            if inner is None:
                raise
            return getattr(inner, name)


def flat_call(model: nn.Module, template: Template) -> FlatCall:
    """A :class:`FlatCall` whose class bears the model's class name (reports name the
    root module by its class)."""
    cls = type(model)
    named = type(cls.__name__, (FlatCall,), {"__module__": cls.__module__,
                                              "__qualname__": cls.__qualname__})
    return named(model, template)


def refuse_changing(short: Template, long_: Template) -> None:
    if not same_structure(short, long_):
        raise ArchlintError(
            "example_input(seq_len, batch) returns a different structure, or plain values "
            "that differ, at seq_len 16 and 24; only its tensors may follow seq_len "
            "(derive a length from a tensor's shape in forward)")
