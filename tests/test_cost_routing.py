"""A mixture of experts routes tokens by data: its sizes come from a stated assumption
(balanced load, measured at the trace length, :mod:`archlint.cost.routing`), never a
failed prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlint.cost.predict import CostModel
from archlint.cost.routing import Routing, measure
from archlint.profile.measure import measure_step
from archlint.settings import Settings
from tests.cost_models import graph_of, sequence_spec

EXPERTS, WIDTH, HIDDEN = 4, 16, 64


class RoundRobinMoE(nn.Module):
    """Top-1 routing, Mixtral's loop over experts with ``torch.where``; the router sends
    position i to expert i mod 4 (a one-hot table), so the load is exactly balanced at
    every length divisible by 4, as the assumption says."""

    def __init__(self, route: str = "round_robin"):
        super().__init__()
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(WIDTH, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, WIDTH))
            for _ in range(EXPERTS))
        positions = torch.arange(4096)
        if route == "round_robin":
            chosen = positions % EXPERTS
        else:                                   # the first half to expert 0, then 1, 2, 3
            chosen = torch.where(positions % 16 < 8, 0, positions % 4)
        self.register_buffer("route", F.one_hot(chosen, EXPERTS).float())

    def forward(self, x):
        b, n, d = x.shape
        flat = x.reshape(-1, d)
        logits = self.route[:n].repeat(b, 1)
        weights, selected = torch.topk(torch.softmax(logits, -1), 1, dim=-1)
        out = torch.zeros_like(flat)
        for i, expert in enumerate(self.experts):
            rows, slot = torch.where(selected == i)
            out = out.index_add(0, rows, expert(flat[rows]) * weights[rows, slot, None])
        return out.reshape(b, n, d)


def test_a_balanced_router_is_predicted_as_a_real_run_measures_it():
    """The fake run gives each expert n/4 rows, as the real run at n=512 does: the
    predicted peak equals the measured one (same ops, same sizes, same allocations)."""
    torch.manual_seed(0)
    module, spec = RoundRobinMoE(), sequence_spec(WIDTH)
    for mode in ("train", "infer"):
        settings = Settings(mode=mode)
        model = CostModel(graph_of(module, spec), settings)
        prediction = model.predict(512)
        assert model.routing is not None and model.routing.shares == (0.25,) * EXPERTS
        assert prediction.peak == measure_step(module, spec, 512, settings).peak


def test_the_shares_are_balanced_within_a_group_of_calls():
    """Position i goes to expert 0 for i mod 16 < 8, else to expert i mod 4: at n=16
    experts get 10, 2, 2, 2 of 16 tokens; the four calls, on inputs of one shape, are
    given the mean share, 16/16/4 = 0.25 each: what the router sends in total is kept."""
    module = RoundRobinMoE(route="skewed")
    routing = measure(module, (torch.randn(1, 16, WIDTH),), {}, 16)
    assert routing == Routing((0.25,) * EXPERTS, 16)
    assert "assume balanced load" in routing.note() and "n=16 (0.25 of its entries)" \
        in routing.note()


def test_a_capacity_factor_scales_every_share_up_to_all_entries():
    routing = Routing((0.25, 0.5), 16, capacity_factor=3.0)
    assert [routing.share(i) for i in range(3)] == [0.75, 1.0, 1.0]   # past the end: mean


def test_a_model_without_data_dependent_sizes_measures_nothing():
    assert measure(nn.Linear(4, 4), (torch.randn(1, 8, 4),), {}, 8) is None


def test_the_capacity_factor_setting_reaches_the_fake_run():
    """--capacity-factor 2 gives each of the 4 experts half the rows instead of a
    quarter: its expert activations grow, the rest of the step does not."""
    torch.manual_seed(0)
    module, spec = RoundRobinMoE(), sequence_spec(WIDTH)
    base = CostModel(graph_of(module, spec), Settings(mode="infer"))
    doubled = CostModel(graph_of(module, spec), Settings(mode="infer", capacity_factor=2.0))
    assert [doubled.routing.share(i) for i in range(EXPERTS)] == [0.5] * EXPERTS
    assert doubled.predict(512).peak > base.predict(512).peak
    assert doubled.predict(512).memory.parts["parameters"] == \
        base.predict(512).memory.parts["parameters"]


def test_a_capacity_factor_below_one_is_refused_naming_the_setting():
    import pytest

    from archlint.errors import ArchlintError
    from archlint.settings import make_settings
    with pytest.raises(ArchlintError, match=r"^setting capacity_factor: '0.5' must be at "
                                            r"least 1"):
        make_settings(capacity_factor="0.5")
