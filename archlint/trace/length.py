"""Choosing the length a model is validated and traced at.

One fixed short length fails every model that downsamples more than it allows (an
AlexNet trunk or wav2vec2's feature encoder reject n=40) and, worse, lets a window that
covers the whole shrunken axis at that length pass for global mixing (VGG-16 at n=40 has
an axis of 2 after four poolings, where a 3x3 conv covers everything). So the length is
chosen per model:

- :func:`candidate_lengths`: start short and double up to a limit (and the model's own
  sizes), so a model that rejects short inputs is traced at the first length it accepts;
- :func:`covering_windows`: the conv and pool ops of a traced graph whose kernel covers
  the whole axis it slides over; while there are any, the model is traced again at twice
  the length. A fixed kernel stops covering the axis at a longer length; a kernel that
  grows with the length (a long convolution) keeps covering it, and the longer trace says
  so just as well.
"""

from __future__ import annotations

import torch
from torch.fx import Node

aten = torch.ops.aten

#: longest length a real validation forward or a structure trace is grown to
MAX_TRACE_LEN = 4096
#: longest image side a structure trace is grown to
MAX_TRACE_SIDE = 512
#: how many times a trace is repeated at a doubled length to uncover fixed windows
MAX_GROWTH = 4

_CONVS = {aten.convolution, aten._convolution, aten.conv1d, aten.conv2d, aten.conv3d}
_POOLS = {aten.max_pool1d, aten.max_pool2d, aten.max_pool3d, aten.avg_pool1d, aten.avg_pool2d,
          aten.avg_pool3d, aten.max_pool1d_with_indices, aten.max_pool2d_with_indices,
          aten.max_pool3d_with_indices}


def candidate_lengths(start: int, limit: int, extra: tuple[int, ...] = ()) -> list[int]:
    """``start``, ``2*start``, ... up to ``limit``, then ``limit`` and the model's own
    sizes (a configured context length, a chunk size) up to ``limit``, each once."""
    lengths = []
    length = max(1, start)
    while length < limit:
        lengths.append(length)
        length *= 2
    lengths.append(max(1, limit))
    lengths.extend(size for size in extra if 0 < size <= limit)
    return list(dict.fromkeys(lengths))


def covering_windows(graph_module: torch.fx.GraphModule) -> list[str]:
    """Conv/pool nodes whose (dilated) kernel spans every position of a spatial axis of
    their input (kernel > 1): at this length they cannot be told from global mixing."""
    found = []
    for node in graph_module.graph.nodes:
        packet = getattr(node.target, "overloadpacket", None)
        if node.op != "call_function" or packet not in _CONVS | _POOLS:
            continue
        covered = _covers(node, packet in _CONVS)
        if covered:
            found.append(node.name)
    return found


def _covers(node: Node, conv: bool) -> bool:
    shape = _shape(node.args[0])
    if shape is None:
        return False
    if conv:
        weight = _shape(node.args[1])
        if weight is None:
            return False
        kernels = list(weight[2:])
        dilation = node.args[5] if len(node.args) > 5 else 1
    else:
        kernels = _listed(node.args[1])
        max_pool = node.target.overloadpacket.__name__.startswith("max")
        dilation = node.args[4] if max_pool and len(node.args) > 4 else 1
    spatial = shape[len(shape) - len(kernels):]
    dilations = _listed(dilation, len(kernels))
    return any(k > 1 and d * (k - 1) >= size - 1
               for k, d, size in zip(kernels, dilations, spatial))


def _listed(value, count: int = 1) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        values = values * count
    return [int(v) for v in values]


def _shape(arg) -> tuple[int, ...] | None:
    value = arg.meta.get("val") if isinstance(arg, Node) else None
    if isinstance(value, torch.Tensor):
        return tuple(int(s) for s in value.shape)
    return None
