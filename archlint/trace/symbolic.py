"""Front-end 2: ``torch.fx.symbolic_trace`` with the sequence mixers as leaf modules.

Used when export fails. Leaves keep their module (classified by type); shapes come
from propagating fake tensors through the graph.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from archlint.graph import META_MODULE, META_SITE, SourceLocation
from archlint.load.source import display_path, is_user_frame

#: Modules kept whole: their internals are not traceable or not worth tracing.
LEAF_MIXERS = (nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention,
               nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


class LeafTracer(torch.fx.Tracer):
    """Standard tracer that also keeps recurrent and attention modules as leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, module: nn.Module, qualname: str) -> bool:
        return isinstance(module, LEAF_MIXERS) or super().is_leaf_module(module, qualname)


def symbolic_graph(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> torch.fx.GraphModule:
    graph = LeafTracer().trace(model, concrete_args=kwargs or None)
    graph_module = torch.fx.GraphModule(model, graph)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    FakeTensorProp(graph_module, mode).propagate(*[mode.from_tensor(a) for a in args])
    for node in graph_module.graph.nodes:
        node.meta[META_MODULE] = node.target if node.op == "call_module" else ""
        site = _last_user_frame(node.meta.get("stack_trace") or "")
        if site is not None:
            node.meta[META_SITE] = site
    return graph_module


def _last_user_frame(stack_trace: str) -> SourceLocation | None:
    frames = [(f, int(line)) for f, line in _FRAME.findall(stack_trace) if is_user_frame(f)]
    if not frames:
        return None
    filename, line = frames[-1]
    return SourceLocation(display_path(filename), line)
