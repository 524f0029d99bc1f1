"""Stage 1: a model target -> an ``nn.Module`` with its input specification.

See :mod:`archlint.load.discover` for how the model is found in a file,
:mod:`archlint.load.inputs` for how its input is inferred, and
:mod:`archlint.load.source` for how layers are mapped to source lines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from archlint.errors import ArchlintError
from archlint.graph import InputSpec, SourceLocation
from archlint.guard import stage
from archlint.load.discover import find_model, import_target, parse_target
from archlint.load.inputs import infer_input
from archlint.load.source import display_path, module_locations, record_construction, user_sites
from archlint.load.state import preserved_state
from archlint.load.weights import WeightBuilder

__all__ = ["LoadedModel", "load_target", "load_module"]


@dataclass
class LoadedModel:
    """A model ready to trace: the module, its input, and where its layers were built."""

    module: nn.Module
    input_spec: InputSpec
    name: str                                  # "model.py:GPT" style label
    file: str | None                           # the model file as shown to the user
    locations: dict[str, SourceLocation] = field(default_factory=dict)
    #: module path -> the user's line that built it, where ``locations`` is in a package
    user_sites: dict[str, SourceLocation] = field(default_factory=dict)
    #: parameters and buffers whose values were never built: name -> bytes (see
    #: :mod:`archlint.load.weights`), and the note saying which and why
    unbuilt: dict[str, int] = field(default_factory=dict)
    unbuilt_note: str = ""


def load_target(text: str, values_needed: bool = True) -> LoadedModel:
    """Import ``model.py``, ``model.py:NAME`` or ``pkg.mod:attr`` and build the model.

    ``values_needed``: a stage will read weight values (the gradient probes, ``profile``);
    without it, large weights are left unwritten (:mod:`archlint.load.weights`), and
    with it they are too where they would not fit the machine.
    """
    target = parse_target(text)
    builder = WeightBuilder(values_needed)
    # a fixed seed makes randomly initialized weights, and so every number measured on
    # them (effective receptive field), the same on every run; the caller's RNG is kept
    with record_construction() as sites, torch.random.fork_rng(), _seeded(), builder:
        with stage(f"importing {target.label}"):
            namespace = import_target(target)
        with stage(f"building the model of {target.label}"):
            model, attr = find_model(namespace, target)
    builder.collect(model)
    label = f"{target.label}:{attr}"
    example = getattr(namespace, "example_input", None)
    if example is not None and not callable(example):
        raise ArchlintError(f"{target.label}: example_input must be a function (seq_len, batch)")
    with preserved_state(model):
        spec, module = infer_input(model, example, label)
    file = display_path(target.path) if target.path else getattr(namespace, "__file__", None)
    return LoadedModel(module, spec, label, file, module_locations(model, sites),
                       user_sites(model, sites), unbuilt=dict(builder.skipped),
                       unbuilt_note=builder.note())


@contextlib.contextmanager
def _seeded(seed: int = 0) -> Iterator[None]:
    torch.manual_seed(seed)
    yield


def load_module(model: nn.Module, example_input=None, name: str | None = None) -> LoadedModel:
    """Wrap a model the caller already built (Python API, pytest plugin)."""
    if not isinstance(model, nn.Module):
        raise ArchlintError(f"expected an nn.Module, got {type(model).__name__}")
    label = name or type(model).__name__
    with preserved_state(model):
        spec, module = infer_input(model, example_input, label)
    locations = module_locations(model)
    file = locations[""].file if "" in locations else None
    return LoadedModel(module, spec, label, file, locations)
