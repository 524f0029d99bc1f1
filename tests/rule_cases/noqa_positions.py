"""AL001's case: a learned positional table of 64 rows whose line carries
``# archlint: noqa: AL106``.

Checked at n=64 the table is long enough, AL106 does not fire and the comment suppresses
nothing (AL001 with ``warn_unused_noqa``); at n=128 ``self.pos(pos)`` indexes past the
table, AL106 fires and the comment suppresses it (used: no AL001).
"""

import torch
import torch.nn as nn


class TinyPositions(nn.Module):
    def __init__(self, vocab: int = 32, d_model: int = 8, max_len: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)  # archlint: noqa: AL106
        self.head = nn.Linear(d_model, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.size(1), device=x.device)
        return self.head(self.embed(x) + self.pos(positions))


def build_model() -> nn.Module:
    return TinyPositions()
