"""Model discovery, input inference, source lines, and one-line load errors."""

from __future__ import annotations

import textwrap

import pytest
import torch

from archlint.errors import ArchlintError
from archlint.load import load_module, load_target

HEADER = "import torch\nfrom torch import nn\n"


def write(tmp_path, body: str, name: str = "model.py") -> str:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return str(path)


def test_factory_wins_over_classes(tmp_path):
    path = write(tmp_path, """
        class A(nn.Module):
            def __init__(self, d=8):
                super().__init__()
                self.lin = nn.Linear(d, d)
            def forward(self, x):
                return self.lin(x)
        class B(A):
            pass
        def build_model():
            return A(4)
    """)
    loaded = load_target(path)
    assert loaded.name.endswith(":build_model")
    assert loaded.module.lin.in_features == 4
    assert loaded.input_spec.description == "float (B, n, 4)"


def test_instance_then_single_class(tmp_path):
    path = write(tmp_path, """
        class A(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(50, 8)
            def forward(self, x):
                return self.emb(x)
    """)
    loaded = load_target(path)
    assert loaded.name.endswith(":A")
    assert loaded.input_spec.kind == "tokens"
    ids = loaded.input_spec.make(7, 2)[0]
    assert ids.shape == (2, 7) and int(ids.max()) < 50


def test_named_attribute(tmp_path):
    path = write(tmp_path, """
        net = nn.Sequential(nn.Conv1d(3, 4, 5, padding=2))
        other = nn.Sequential(nn.Linear(2, 2))
    """)
    loaded = load_target(f"{path}:net")
    assert loaded.input_spec.description == "float (B, 3, n)"


def test_construction_lines(tmp_path):
    path = write(tmp_path, """
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv1d(4, 4, 3, padding=1)
            def forward(self, x):
                return self.conv(x)
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList(
                    [Block() for _ in range(2)])
            def forward(self, x):
                for b in self.blocks:
                    x = b(x)
                return x
    """)
    with pytest.raises(ArchlintError, match=r"several model classes \(Block, Net\)"):
        load_target(path)
    loc = load_target(path + ":Net").locations
    # line numbers count the 2-line header
    assert loc["blocks.0.conv"].line == 7
    assert loc["blocks.1"].line == 14
    assert loc["blocks"].line == 13
    assert loc[""].line == 10


def test_layout_fallback_when_conv_input_is_transposed(tmp_path):
    """A Conv1d first layer applied to x.transpose(1, 2): (B, n, C) is the layout."""
    path = write(tmp_path, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv1d(16, 16, 3, padding=1)
            def forward(self, x):
                return self.conv(x.transpose(1, 2)).transpose(1, 2)
    """)
    assert load_target(path).input_spec.description == "float (B, n, 16)"


def test_example_input_declares_layout(tmp_path):
    path = write(tmp_path, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(6, 6)
            def forward(self, x, mask):
                return self.lin(x) * mask[..., None]
        def example_input(seq_len, batch):
            return torch.randn(batch, seq_len, 6), torch.ones(batch, seq_len)
    """)
    spec = load_target(path).input_spec
    assert spec.kind == "custom" and spec.seq_dims == (1, 1)


def test_api_module_gets_source_lines_from_init():
    from fixtures_helpers import TinyConv
    model = TinyConv()
    loaded = load_module(model)
    assert loaded.locations["conv"].file.endswith("fixtures_helpers.py")


def test_stateful_forward_is_restored(tmp_path):
    """A model that stores state on self is left as it was (seed 001's memory RNN)."""
    path = write(tmp_path, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(4, 4)
                self.memory = None
            def forward(self, x):
                if self.memory is not None:
                    x = torch.cat([self.memory, x], dim=1)
                self.memory = x.detach()
                return self.lin(x)
    """)
    loaded = load_target(path)
    assert loaded.module.memory is None


@pytest.mark.parametrize("body,target_suffix,message", [
    ("x = (", "", "syntax error"),
    ("import not_a_module_xyz", "", "cannot import 'not_a_module_xyz'"),
    ("raise RuntimeError('boom')", "", "importing it raised RuntimeError: boom"),
    ("x = 1", "", "no model found"),
    ("a = nn.Linear(2, 2)\nb = nn.Linear(2, 2)", "", "several model instances (a, b)"),
    ("class A(nn.Module):\n    def __init__(self, d):\n        super().__init__()\n",
     "", "A need constructor arguments"),
    ("def build_model():\n    raise ValueError('bad size')", "",
     "build_model() raised ValueError: bad size"),
    ("class A(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "        self.l = nn.Linear(3, 3)\n    def forward(self, x):\n        raise KeyError('x')\n",
     "", "forward raised KeyError"),
    ("x = 1", ":missing", "no attribute 'missing'"),
])
def test_load_errors_are_one_line(tmp_path, body, target_suffix, message):
    path = write(tmp_path, body + "\n")
    with pytest.raises(ArchlintError) as info:
        load_target(path + target_suffix)
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert str(tmp_path) in text or "model.py" in text


def test_missing_file():
    with pytest.raises(ArchlintError, match="no such file"):
        load_target("does/not/exist.py")


def test_unknown_first_layer_needs_example_input(tmp_path):
    path = write(tmp_path, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(1))
            def forward(self, x):
                return x * self.scale
    """)
    with pytest.raises(ArchlintError, match="example_input"):
        load_target(path)


def test_waveform_input_for_single_channel_conv(tmp_path):
    path = write(tmp_path, """
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv1d(1, 8, 10, stride=5)
            def forward(self, wav):
                return self.conv(wav[:, None, :])
    """)
    assert load_target(path).input_spec.kind == "waveform"
    assert torch.Size([1, 4000]) == load_target(path).input_spec.make(4000, 1)[0].shape
