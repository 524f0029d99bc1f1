"""forward(batch, options) with the ids in a dict and the mask in a tuple inside it, and
a plain option beside them. Otherwise inputs_positional.py's model."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, batch, options):
        h = self.embed(batch["ids"])
        if options["masked"]:
            h = h * batch["masks"][0].unsqueeze(-1)
        return self.attn(h, h, h, need_weights=False)[0]


def example_input(seq_len, batch):
    ids = torch.randint(0, 100, (batch, seq_len))
    return ({"ids": ids, "masks": (torch.ones(batch, seq_len),)}, {"masked": True}), {}
