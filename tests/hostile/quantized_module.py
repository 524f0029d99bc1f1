"""A dynamically int8-quantized Linear: not an nn.Linear, so the input is not inferred."""
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
    def forward(self, x):
        return self.proj(x)
model = torch.ao.quantization.quantize_dynamic(Tiny(), {nn.Linear}, dtype=torch.qint8)
