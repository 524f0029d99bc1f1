"""The traced model: a torch.fx graph plus what the classifier learned about it.

``ModelGraph`` is the hand-off between the trace, classify and analyze stages. Passes
annotate fx nodes with namespaced ``node.meta["archlint.<key>"]`` entries:

- ``archlint.module``: dotted path of the innermost module the node ran in (``""`` = root)
- ``archlint.layer``: name of the :class:`Layer` the node belongs to, if any
- ``archlint.site``: :class:`SourceLocation` of the user line that called the op
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlint.kinds import LayerKind

META_MODULE = "archlint.module"
META_LAYER = "archlint.layer"
META_SITE = "archlint.site"


@dataclass(frozen=True, order=True)
class SourceLocation:
    """Where a layer was constructed in the user's source (1-based line)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class InputSpec:
    """How to build the model's example input at any length without knowing the model.

    ``make(seq_len, batch)`` returns the positional arguments of ``forward``; it uses
    torch factory functions only, so it yields fake tensors under ``FakeTensorMode``.
    ``seq_dims[i]`` is the sequence dimension of argument ``i`` (``None`` when the
    argument has no sequence axis); for images it is the height dimension.
    """

    kind: str            # tokens | sequence | channels | image | waveform | custom
    description: str              # e.g. "token ids (B, n) < 50257"
    make: Callable[[int, int], tuple[Any, ...]]
    seq_dims: tuple[int | None, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)   # constant keyword args of forward
    min_len: int = 1     # shortest length the model accepts (e.g. a conv feature stack)

    @property
    def spatial(self) -> bool:
        """True when n is the side of a 2-D input rather than a sequence length."""
        return self.kind == "image"


@dataclass
class Layer:
    """One classified layer: a leaf module, or a functional op that mixes positions.

    ``params`` holds the kind's key parameters, e.g. ``kernel_size``, ``stride``,
    ``dilation``, ``padding``, ``causal`` for CONV; ``heads``, ``head_dim``, ``causal``,
    ``window``, ``implementation`` ("fused" | "materialized" | "linear") for ATTENTION;
    ``max_len`` for a learned POSITIONAL table; ``num_layers``, ``bidirectional`` for
    RECURRENCE.
    """

    name: str                       # module path, or "<module>:<op>" for functional layers
    kind: LayerKind
    type_name: str                  # "Conv1d", "aten.scaled_dot_product_attention", ...
    params: dict[str, Any] = field(default_factory=dict)
    location: SourceLocation | None = None
    nodes: list[str] = field(default_factory=list)   # fx node names belonging to it

    def describe(self) -> str:
        """Key parameters as ``k=v`` text, for the layer table."""
        return ", ".join(f"{key}={_short(value)}" for key, value in self.params.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "type": self.type_name,
            "params": {key: _jsonable(value) for key, value in self.params.items()},
            "location": None if self.location is None else
            {"file": self.location.file, "line": self.location.line},
        }


@dataclass
class ModelGraph:
    """A model traced to torch.fx, with every node mapped to its module and layer."""

    module: nn.Module
    input_spec: InputSpec
    trace_len: int                                   # sequence length the graph was traced at
    graph_module: torch.fx.GraphModule              # ATen-level for export and hooks passes
    frontend: str                                    # "torch.export" | "symbolic_trace" | "hooks"
    frontend_notes: list[str] = field(default_factory=list)   # why earlier front-ends failed
    locations: dict[str, SourceLocation] = field(default_factory=dict)  # module path -> source
    #: module path -> the user's line that built it, where ``locations`` is in a package
    user_sites: dict[str, SourceLocation] = field(default_factory=dict)
    module_calls: list[str] = field(default_factory=list)     # leaf module paths in call order
    layers: list[Layer] = field(default_factory=list)
    unattributed: list[str] = field(default_factory=list)     # op names no handler knows

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def layers_of(self, *kinds: LayerKind) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind in kinds]

    def submodule(self, path: str) -> nn.Module:
        return self.module.get_submodule(path) if path else self.module


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and len(value) == 1:
        return str(value[0])
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return str(value)
