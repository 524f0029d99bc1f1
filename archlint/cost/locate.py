"""From the cost section back to the user's source: which layer holds the bytes.

The memory tracker attributes every storage to the module that allocated it (a module
path); findings are located at a classified :class:`Layer`. A functional layer is named
``"<module>:<op>"``, so the module part is what is matched.
"""

from __future__ import annotations

from typing import Any

from archlint.cost.report import CostReport
from archlint.graph import Layer, ModelGraph
from archlint.kinds import LayerKind


def cost_of(report: Any) -> CostReport | None:
    """The report's cost section, if the cost analysis ran."""
    return report.cost if isinstance(report.cost, CostReport) else None


def module_of(layer: Layer) -> str:
    return layer.name.partition(":")[0]


def layer_for(graph: ModelGraph, module: str | None,
              kinds: tuple[LayerKind, ...] = ()) -> Layer | None:
    """The classified layer for a module path: itself, else the nearest one inside or
    around it (kinds first when given)."""
    if module is None:
        return None
    layers = [layer for layer in graph.layers if layer.location is not None]
    preferred = [layer for layer in layers if layer.kind in kinds] + layers

    def relation(layer: Layer) -> int | None:
        name = module_of(layer)
        if name == module:
            return 0
        if name.startswith(module + ".") or module == "":
            return 1                          # inside the module
        if module.startswith(name + ".") or name == "":
            return 2                          # around it
        return None

    for rank in (0, 1, 2):
        for layer in preferred:
            if relation(layer) == rank:
                return layer
    return None


def attention_layers(graph: ModelGraph) -> list[Layer]:
    """Attention layers whose cost grows as n² (not linear attention)."""
    return [layer for layer in graph.layers_of(LayerKind.ATTENTION)
            if layer.params.get("implementation") != "linear"]
