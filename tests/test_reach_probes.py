"""The dynamic probes against hand derivations: the effective receptive field of a linear
all-ones conv stack is a trinomial distribution; causality and order probes."""

from __future__ import annotations

import torch
from test_reach_seed import reach_of, sequence
from torch import nn

from archlint.reach.probes import ERF_MASS, effective_receptive_field


class OnesStack(nn.Module):
    """L linear convs, kernel 3, all weights 1: dy[p]/dx[p+j] counts the paths."""

    def __init__(self, layers: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(1, 1, 3, padding=1, bias=False)
                                   for _ in range(layers))
        for conv in self.convs:
            nn.init.ones_(conv.weight)

    def forward(self, x):
        for conv in self.convs:
            x = conv(x)
        return x


def trinomial(layers: int) -> list[int]:
    coefficients = [1]
    for _ in range(layers):
        coefficients = [sum(coefficients[i - k] for k in range(3) if 0 <= i - k < len(coefficients))
                        for i in range(len(coefficients) + 2)]
    return coefficients


def smallest_window(mass: list[int], centre: int, share: float) -> int:
    total = sum(mass)
    return min(b - a + 1 for a in range(centre + 1) for b in range(centre, len(mass))
               if sum(mass[a:b + 1]) >= share * total)


def test_erf_of_linear_stack_is_the_trinomial_window():
    layers = 8
    mass = trinomial(layers)                          # (1 + x + x^2)^8: 17 coefficients
    assert len(mass) == 17 and mass[8] == max(mass)
    expected = smallest_window(mass, 8, ERF_MASS)
    reach = reach_of(OnesStack(layers), lambda n, b: (torch.randn(b, 1, n),))
    erf = reach.probe.erf["n"]
    assert erf["span"] == expected == 9
    assert reach.to_dict()["effective_receptive_field"]["fraction_of_rf"] == round(9 / 17, 4)
    centre = reach.probe.position
    assert reach.probe.support["n"] == (centre - 8, centre + 8)    # R = 17, centred


def test_erf_window_contains_the_position():
    mass = torch.tensor([[50.0, 0.0, 8.0, 0.0, 1.0, 1.0]])       # 95% of 60 = 57
    assert effective_receptive_field(mass, 4) == {"span": 5, "start": 0, "end": 4,
                                                  "mass": ERF_MASS}  # 50+8+1 = 59
    assert effective_receptive_field(mass, None)["span"] == 3     # 50+0+8 = 58


class Shifted(nn.Module):
    """Output t reads input t+2: a leak the causality probe must measure."""

    def forward(self, x):
        return torch.roll(x, shifts=-2, dims=1) * 2


def test_causality_probe_measures_how_far_ahead():
    reach = reach_of(Shifted(), sequence(4))
    assert reach.probe.causal is False and reach.probe.ahead >= 2


class PositionalEncoder(nn.Module):
    def __init__(self, positions: bool):
        super().__init__()
        self.positions = nn.Embedding(64, 8) if positions else None
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        if self.positions is not None:
            x = x + self.positions(torch.arange(x.size(1)))
        return self.attn(x, x, x)[0]


def test_order_probe_sees_positions_or_their_absence():
    blind = reach_of(PositionalEncoder(False), sequence(8), probe_len=32)
    assert blind.probe.order_blind and blind.probe.attention_order_blind == {"attn": True}
    assert [row.name for row in blind.order_blind_attention] == ["attn"]
    aware = reach_of(PositionalEncoder(True), sequence(8), probe_len=32)
    assert aware.probe.order_blind is False and aware.probe.attention_order_blind == {
        "attn": False}
    assert aware.order_blind_attention == []


def test_probe_leaves_the_model_untouched():
    model = OnesStack(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    reach_of(model, lambda n, b: (torch.randn(b, 1, n),))
    assert model.training and all(torch.equal(before[k], v)
                                  for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())
