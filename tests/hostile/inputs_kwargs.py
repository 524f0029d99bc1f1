"""A Hugging Face-style forward(input_ids, attention_mask=None); example_input: kwargs."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        return self.attn(h, h, h, need_weights=False)[0]


def example_input(seq_len, batch):
    ids = torch.randint(0, 100, (batch, seq_len))
    mask = torch.ones(batch, seq_len)
    return {"input_ids": ids, "attention_mask": mask}
