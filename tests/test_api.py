"""The Python API: the README's example runs, exports are lazy, errors are ArchlintErrors."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

import archlint
from archlint.errors import ArchlintError

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- the block below runs in tests/test_api.py -->"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    assert MARK in text, "README lost its runnable Python API example"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARK):], re.DOTALL)
    return block.group(1)


def test_readme_python_example_runs(tmp_path):
    example = tmp_path / "readme_example.py"     # a real file: layers get a file:line
    example.write_text(readme_example())
    out = io.StringIO()
    namespace = {"__name__": "readme_example", "__file__": str(example)}
    with contextlib.redirect_stdout(out):
        exec(compile(example.read_text(), str(example), "exec"), namespace)
    lines = out.getvalue().splitlines()
    assert lines[0] == "token ids (B, n) < 100"
    assert lines[1] == "[('embed', 'embedding'), ('pos', 'positional')]"
    pos_line = 1 + example.read_text().splitlines().index(
        "        self.pos = nn.Embedding(max_len, d_model)")
    assert lines[2].startswith(f"{example}:{pos_line} AL106 positional table pos has 512 rows")
    assert lines[-1] == "2 True"               # S(n) of 2 encoder layers; a predicted peak


def test_exports_are_the_pipeline_functions_and_lazy():
    from archlint.api import analyze, check
    from archlint.budget import assert_budget

    assert archlint.analyze is analyze and archlint.check is check
    assert archlint.assert_budget is assert_budget
    assert set(archlint.__all__) >= {"analyze", "check", "assert_budget"}
    with pytest.raises(AttributeError):
        archlint.nothing_here  # noqa: B018
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, archlint, archlint.pytest_plugin; "
         "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"       # pytest startup does not pay for torch


def test_analyze_a_target_string_matches_the_cli():
    report = archlint.analyze("fixtures/transformer_model.py", seq_len="4k")
    assert report.model.file == "fixtures/transformer_model.py"
    assert report.settings.seq_len == (4096,)
    assert [(f.code, f.location.line) for f in report.findings if f.code == "AL106"] == [
        ("AL106", 23)]
    assert archlint.check("fixtures/transformer_model.py", seq_len=512, select="AL106") == []


@pytest.mark.parametrize("options,message", [
    ({"seq_len": "lots"}, "not a length"),
    ({"memory": "16GX"}, "not a size"),
    ({"colour": "red"}, "unknown setting 'colour'"),
])
def test_bad_arguments_raise_archlint_error(options, message):
    with pytest.raises(ArchlintError, match=message):
        archlint.analyze("fixtures/cnn_model.py", **options)
