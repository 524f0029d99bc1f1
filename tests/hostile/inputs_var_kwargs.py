"""forward(**inputs): the token ids and mask arrive only by keyword. Otherwise
inputs_positional.py's model."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, **inputs):
        h = self.embed(inputs["input_ids"])
        h = h * inputs["attention_mask"].unsqueeze(-1)
        return self.attn(h, h, h, need_weights=False)[0]


def example_input(seq_len, batch):
    return {"input_ids": torch.randint(0, 100, (batch, seq_len)),
            "attention_mask": torch.ones(batch, seq_len)}
