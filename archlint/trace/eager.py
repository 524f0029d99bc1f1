"""Front-end 3 (degraded): one eager forward at a short length, recorded op by op.

For models neither tracer can handle (data-dependent guards, as in Longformer), the
model runs for real at the trace length while a ``TorchDispatchMode`` writes every
ATen op into a torch.fx graph and global module hooks supply the module stack. Python
control flow is specialized to this one input, which is why it is the last resort.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from archlint.graph import META_MODULE, META_SITE
from archlint.load.source import user_caller


class _GraphRecorder(TorchDispatchMode):
    """Appends one fx node per dispatched ATen op, wiring tensors by identity."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.graph = torch.fx.Graph()
        self.root = nn.Module()
        self.producers: dict[int, torch.fx.Node] = {}
        self.alive: list[torch.Tensor] = []          # keeps ids unique while recording
        self.stack: list[tuple[str, str]] = [("", type(model).__qualname__)]
        self.names = {id(t): n for n, t in model.named_parameters()}
        self.names.update({id(t): n for n, t in model.named_buffers()})

    def bind(self, tensor: torch.Tensor, node: torch.fx.Node) -> None:
        self.producers[id(tensor)] = node
        self.alive.append(tensor)
        node.meta["val"] = torch.empty_like(tensor, device="meta")

    def _node_for(self, tensor: torch.Tensor) -> torch.fx.Node:
        if id(tensor) in self.producers:
            return self.producers[id(tensor)]
        name = self.names.get(id(tensor), f"constant_{len(self.producers)}")
        attr = name.replace(".", "_")
        self.root.register_buffer(attr, tensor.detach(), persistent=False)
        node = self.graph.get_attr(attr)
        node.meta["archlint.param"] = name
        self.bind(tensor, node)
        return node

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)

        def as_arg(x):
            return self._node_for(x) if isinstance(x, torch.Tensor) else x

        node = self.graph.call_function(func, tree_map(as_arg, args), tree_map(as_arg, kwargs))
        path, qualname = self.stack[-1]
        node.meta["nn_module_stack"] = {p or "root": (p, q) for p, q in self.stack}
        node.meta[META_MODULE] = path
        site = user_caller(sys._getframe(1))
        if site is not None:
            node.meta[META_SITE] = site
        if isinstance(out, torch.Tensor):
            self.bind(out, node)
        elif isinstance(out, (tuple, list)):
            node.meta["val"] = tuple(
                torch.empty_like(o, device="meta") if isinstance(o, torch.Tensor) else o
                for o in out)
            for index, item in enumerate(out):
                if isinstance(item, torch.Tensor):
                    item_node = self.graph.call_function(getitem, (node, index))
                    item_node.meta.update({k: node.meta[k] for k in
                                           ("nn_module_stack", META_MODULE) if k in node.meta})
                    self.bind(item, item_node)
        return out


def getitem(sequence, index):
    return sequence[index]


def eager_graph(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> torch.fx.GraphModule:
    """Run ``model`` once for real and return the recorded ATen graph."""
    recorder = _GraphRecorder(model)
    paths = {id(m): p for p, m in model.named_modules()}
    qualnames = {id(m): type(m).__qualname__ for m in model.modules()}

    def enter(module, _inputs):
        if id(module) in paths and module is not model:
            recorder.stack.append((paths[id(module)], qualnames[id(module)]))

    def leave(module, _inputs, _output):
        if id(module) in paths and module is not model and len(recorder.stack) > 1:
            recorder.stack.pop()

    for index, arg in enumerate(args):
        if isinstance(arg, torch.Tensor):
            node = recorder.graph.placeholder(f"arg{index}")
            recorder.bind(arg, node)
    pre = nn.modules.module.register_module_forward_pre_hook(enter)
    post = nn.modules.module.register_module_forward_hook(leave)
    try:
        with recorder:
            output = model(*args, **kwargs)
    finally:
        pre.remove()
        post.remove()
    leaves = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]
    recorder.graph.output(tuple(recorder._node_for(t) for t in leaves))
    return torch.fx.GraphModule(recorder.root, recorder.graph)
