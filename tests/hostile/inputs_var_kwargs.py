"""forward(**inputs): the token ids arrive only by keyword."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 8)

    def forward(self, **inputs):
        return self.embed(inputs["input_ids"])


def example_input(seq_len, batch):
    return {"input_ids": torch.randint(0, 100, (batch, seq_len))}
