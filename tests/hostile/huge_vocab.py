"""nn.Embedding(10**8, 8): 3.2 GB of float32 weights; SmallVocab is the same model at 1000."""
from torch import nn


class Model(nn.Module):
    vocab = 10**8

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(self.vocab, 8)
        self.proj = nn.Linear(8, 8)

    def forward(self, ids):
        return self.proj(self.embed(ids))


class SmallVocab(Model):
    vocab = 1000


class MidVocab(Model):
    vocab = 10**7                 # 320 MB: fits this machine, built for real
