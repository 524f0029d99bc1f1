"""What every candidate reads: the report, the goals, the model's own standing, and
helpers that find the user's lines and re-run the cost model."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from archlint.advise.position import Goals, Standing
from archlint.advise.suggestion import Site
from archlint.graph import Layer, ModelGraph, SourceLocation
from archlint.kinds import LayerKind


@dataclass
class Context:
    report: Any
    goals: Goals
    position: Standing
    already: list[str] = field(default_factory=list)    # changes the model already has
    ruled_out: list[str] = field(default_factory=list)  # changes that cannot help, and why

    @property
    def graph(self) -> ModelGraph:
        return self.report.graph

    @property
    def settings(self) -> Any:
        return self.report.settings

    @property
    def n(self) -> int:
        return self.position.seq_len

    @property
    def prediction(self) -> Any:
        cost = self.report.cost
        return cost.at(self.n) or cost.target

    @cached_property
    def cost_settings(self) -> Any:
        """The settings a single-device re-run uses (the layout options are the parallel
        analysis's business, not the cost model's)."""
        return self.settings.with_(seq_len=(self.n,), parallel=None, zero=None,
                                   checkpoint="none", offload=False, baseline=None)

    def rerun(self, graph: ModelGraph | None = None, seq_len: int | None = None,
              **changes: Any) -> Any:
        """One prediction of ``graph`` (default: the model's own) at ``seq_len`` (default:
        the target) under the settings with ``changes``, by a new cost model."""
        from archlint.cost import CostModel

        n = seq_len or self.n
        settings = self.cost_settings.with_(seq_len=(n,), **changes)
        return CostModel(graph or self.graph, settings).predict(n)

    # -- reach ---------------------------------------------------------------------

    def reach_at(self, seq_len: int) -> tuple[str, float, int]:
        """R text, R size and S at another length, from the reach expressions."""
        reach = self.report.reach
        rf = reach.receptive_field
        return (rf.describe(), min(rf.size.at(seq_len), seq_len),
                int(reach.serial_steps.at(seq_len)))

    def standing(self, prediction: Any, **changes: Any) -> Standing:
        """The model's standing with the cost of ``prediction`` and reach ``changes``."""
        values = {"peak": prediction.peak, "flops": prediction.flops,
                  "seq_len": prediction.seq_len, **changes}
        return replace(self.position, **values).judged(self.goals)

    # -- where ---------------------------------------------------------------------

    def attention_layers(self) -> list[Layer]:
        """Attention layers whose scores grow as n² (not linear attention)."""
        return [layer for layer in self.graph.layers_of(LayerKind.ATTENTION)
                if layer.params.get("implementation") != "linear"]

    def attention_depth(self) -> int:
        """Attention layers one position's information passes through (reach rows)."""
        rows = [row for row in self.report.reach.layers if row.kind == "attention"]
        return len(rows) or len(self.attention_layers())

    def location(self, path: str, location: SourceLocation | None = None) -> SourceLocation | None:
        """The user's line for a module path: the layer's own line unless it lies in an
        installed package, then the user's line that built it (or an ancestor)."""
        from archlint.load.source import in_installed_package

        graph = self.graph
        location = location or graph.locations.get(path)
        if location is not None and not in_installed_package(location.file):
            return location
        probe = path
        while True:
            site = graph.user_sites.get(probe)
            if site is not None:
                return site
            if not probe:
                return location
            probe = probe.rpartition(".")[0]

    def sites(self, layers: list[Layer]) -> tuple[Site, ...]:
        """Folded sites (``blocks.0-11.attn``) at the user's lines."""
        from archlint.format.text import fold_repeats

        moved = [replace(layer, location=self.location(layer.name.partition(":")[0],
                                                       layer.location)) for layer in layers]
        return tuple(Site(name, layer.location) for name, layer in fold_repeats(moved))

    def module_sites(self, paths: list[str] | tuple[str, ...]) -> tuple[Site, ...]:
        layers = [Layer(name=path, kind=LayerKind.POINTWISE,
                        type_name=type(self.graph.submodule(path)).__name__,
                        location=self.location(path)) for path in paths]
        return self.sites(layers)

    def held_by(self, category: str, modules: list[str]) -> int:
        """Bytes of ``category`` the modules (and their children) hold at the peak."""
        owners = self.prediction.memory.owners.get(category, {})
        return sum(nbytes for owner, nbytes in owners.items()
                   if any(owner == m or owner.startswith(m + ".") or not m for m in modules))


def ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b))
