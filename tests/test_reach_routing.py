"""A mixture of experts' routing in the static pass (:mod:`archlint.reach.routing`):
rows picked by ``torch.where`` and put back by the same coordinate read only their own
position; anything else done with routed rows stays conservative. Each case is checked
against the gradient probe, which sees the real routing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from test_reach_seed import reach_of, sequence
from torch import nn

WIDTH, EXPERTS = 8, 4


class Routed(nn.Module):
    """A causal band conv (k=3, left only) then top-2 routing over 4 experts; ``put``
    says how each expert's rows go back: ``same`` (Mixtral's index_add_ by the rows it
    picked), ``flipped`` (by the rows reversed: rows of other positions), ``pooled``
    (a sum over the expert's rows broadcast to every position)."""

    def __init__(self, put: str = "same"):
        super().__init__()
        self.put = put
        self.conv = nn.Conv1d(WIDTH, WIDTH, 3, padding=2)
        self.gate = nn.Linear(WIDTH, EXPERTS, bias=False)
        self.experts = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(EXPERTS))

    def forward(self, x):
        n = x.size(1)
        x = self.conv(x.transpose(1, 2))[..., :n].transpose(1, 2)
        flat = x.reshape(-1, WIDTH)
        weights, selected = torch.topk(F.softmax(self.gate(flat), dim=-1), 2, dim=-1)
        mask = F.one_hot(selected, EXPERTS).permute(2, 1, 0)
        out = torch.zeros_like(flat)
        for i, expert in enumerate(self.experts):
            slot, rows = torch.where(mask[i])
            y = expert(flat[rows]) * weights[rows, slot, None]
            if self.put == "same":
                out.index_add_(0, rows, y)
            elif self.put == "flipped":
                out.index_add_(0, rows.flip(0), y)
            else:
                out = out + y.sum(0, keepdim=True)
        return out.reshape(x.shape)


def test_rows_put_back_where_they_were_picked_read_only_their_own_position():
    """The conv reads t-2..t; the experts add nothing: R = 3, causal, one serial step,
    and the probe (real routing) finds the same support."""
    reach = reach_of(Routed("same"), sequence(WIDTH))
    assert reach.receptive_field.size.at(4096) == 3
    assert (reach.receptive_field.left, reach.receptive_field.right) == (2, 0)
    assert reach.causal and str(reach.serial_steps) == "1"
    assert reach.agreement is True


def test_rows_put_back_elsewhere_or_pooled_are_global():
    """Scattered by another index, or summed over the expert's rows, a position's output
    reads other positions: the static reach must be global (an upper bound the probe
    cannot exceed), never the per-position answer."""
    for put in ("flipped", "pooled"):
        reach = reach_of(Routed(put), sequence(WIDTH))
        assert reach.receptive_field.size.at(4096) == 4096, put
        assert not reach.causal or reach.trusted != "static", put
