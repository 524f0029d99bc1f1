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
    return graph_module
