"""Front-end 1: non-strict ``torch.export`` at a short length.

The graph is ATen-level; each node carries ``nn_module_stack``. Outputs are flattened
to a tuple of tensors first, so models returning cache objects or dataclasses (Hugging
Face ``ModelOutput``) export too.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from archlint.graph import META_MODULE, META_SITE
from archlint.trace.callsites import CallSiteRecorder

_WRAPPED = "model"


class TensorOutputs(nn.Module):
    """Calls the model and returns only the tensors in its output, flattened."""

    def __init__(self, model: nn.Module, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.call_kwargs = kwargs

    def forward(self, *args: Any) -> tuple[torch.Tensor, ...]:
        leaves, _ = tree_flatten(self.model(*args, **self.call_kwargs))
        tensors = tuple(leaf for leaf in leaves if isinstance(leaf, torch.Tensor))
        if not tensors:
            raise TypeError("forward returned no tensor")
        return tensors


@contextlib.contextmanager
def quiet_torch_logs() -> Iterator[None]:
    """Failed guards make torch log whole graphs; archlint reports one line instead."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def unwrap_path(path: str) -> str:
    """``model.blocks.0`` -> ``blocks.0``: module paths as the user knows them."""
    if path == _WRAPPED:
        return ""
    return path[len(_WRAPPED) + 1:] if path.startswith(_WRAPPED + ".") else path


def innermost_module(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    return list(stack.values())[-1][0]


def export_graph(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> torch.fx.GraphModule:
    """The unlifted (runnable) ATen graph of ``model(*args, **kwargs)``."""
    recorder = CallSiteRecorder()
    # under no_grad, regions a model runs with grad disabled (rotary tables in HF models)
    # stay inline instead of becoming wrap_with_set_grad_enabled subgraphs
    # a failed export prints its partial FX graph on sys.stderr: the note says why instead
    with recorder, torch.no_grad(), quiet_torch_logs(), \
            contextlib.redirect_stderr(io.StringIO()):
        program = torch.export.export(TensorOutputs(model, kwargs), args, strict=False)
    graph_module = program.module()
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack:
            node.meta["nn_module_stack"] = {
                key: (unwrap_path(path), qualname) for key, (path, qualname) in stack.items()}
        node.meta[META_MODULE] = innermost_module(node)
        site = recorder.site_of(node.meta.get("torch_fn"))
        if site is not None:
            node.meta[META_SITE] = site
    concrete_shapes(graph_module, args, kwargs)
    return graph_module


def _unbacked(value: Any) -> bool:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return any(isinstance(v, torch.Tensor) and any(not isinstance(s, int) for s in v.shape)
               for v in values)


def concrete_shapes(graph_module: torch.fx.GraphModule, args: tuple,
                    kwargs: dict[str, Any]) -> None:
    """Sizes that depend on the data (``torch.where(mask)``, a mixture of experts'
    tokens per expert) are symbols in the exported graph; every stage after tracing
    reads shapes as ints at the trace length, so they are replaced by the sizes this
    example input gives, measured by running the graph once at the trace length."""
    if not any(_unbacked(node.meta.get("val")) for node in graph_module.graph.nodes):
        return
    found: dict[torch.fx.Node, Any] = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, node: torch.fx.Node) -> Any:
            result = super().run_node(node)
            found[node] = result
            return result

    with torch.no_grad():
        _Recorder(graph_module).run(*tree_flatten((args, kwargs))[0])
    for node, result in found.items():
        if _unbacked(node.meta.get("val")):
            node.meta["val"] = _as_meta(result)


def _as_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype,
                                   device="meta")
    if isinstance(value, (tuple, list)):
        return type(value)(_as_meta(v) for v in value)
    return value
