"""Temporary projects for the integration tests: a model file, a pyproject, a git repo."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

#: a token model whose learned positional table has ``rows`` rows (AL106 above that length)
MODEL = '''\
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.pos = nn.Embedding({rows}, 16){comment}
        self.head = nn.Linear(16, 50)

    def forward(self, ids):
        positions = torch.arange(ids.size(1), device=ids.device)
        return self.head(self.embed(ids) + self.pos(positions))
'''
#: the line of ``self.pos = ...`` in :data:`MODEL`
POS_LINE = 9


def write_model(path: Path, rows: int = 512, comment: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MODEL.format(rows=rows, comment=f"  {comment}" if comment else ""))
    return path


def write_pyproject(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text(textwrap.dedent(body))
    return path


def git(folder: Path, *args: str) -> str:
    env_args = ["-c", "user.name=archlint-test", "-c", "user.email=test@example.com",
                "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *env_args, *args], cwd=folder, check=True,
                          capture_output=True, text=True).stdout
