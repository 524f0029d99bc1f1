"""``# archlint: noqa`` on the line that builds a layer; unused ones with AL001."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from project_helpers import POS_LINE, write_model

from archlint.cli import main
from archlint.session import CheckSession
from archlint.suppress import directives

MULTILINE = '''\
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.pos = nn.Embedding(
            512,
            16,
        )  # archlint: noqa: AL106
        note = "# archlint: noqa"  # a string, not a directive
        self.head = nn.Linear(16, 50)

    def forward(self, ids):
        positions = torch.arange(ids.size(1), device=ids.device)
        return self.head(self.embed(ids) + self.pos(positions))
'''


def check(path, *flags: str) -> dict:
    result = CliRunner().invoke(main, ["check", str(path), "--seq-len", "4k", "--isolated",
                                       "--format", "json", *flags])
    assert result.exit_code in (0, 1), result.output
    document = json.loads(result.output)
    return {"exit": result.exit_code,
            "findings": [(f["code"], f["location"]["line"], f["message"], f["fix"])
                         for f in document["reports"][0]["findings"]]}


def test_unsuppressed_model_has_the_finding(tmp_path):
    out = check(write_model(tmp_path / "m.py"))
    assert [(code, line) for code, line, *_ in out["findings"]] == [("AL106", POS_LINE)]


@pytest.mark.parametrize("comment", ["# archlint: noqa: AL106", "# archlint: noqa",
                                     "#archlint:noqa:al106", "# ARCHLINT: NOQA: AL201, AL106"])
def test_noqa_on_the_layer_line_suppresses(tmp_path, comment):
    out = check(write_model(tmp_path / "m.py", comment=comment))
    assert out == {"exit": 0, "findings": []}


@pytest.mark.parametrize("comment", ["# archlint: noqa: AL201", "# noqa: AL106",
                                     "# archlint noqa"])
def test_other_codes_and_other_tools_do_not_suppress(tmp_path, comment):
    out = check(write_model(tmp_path / "m.py", comment=comment))
    assert [code for code, *_ in out["findings"]] == ["AL106"]


def test_comment_after_a_call_split_over_lines(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MULTILINE)
    assert check(path)["findings"] == []
    assert [d.line for d in directives(str(path))] == [12]      # not the string on line 13
    assert directives(str(path))[0].covers == range(9, 13)


def test_unused_noqa_is_reported_only_when_asked(tmp_path):
    path = write_model(tmp_path / "m.py", rows=8192, comment="# archlint: noqa: AL106")
    assert check(path)["findings"] == []
    out = check(path, "--warn-unused-noqa")
    assert out["exit"] == 1
    assert out["findings"] == [(
        "AL001", POS_LINE, "unused suppression `# archlint: noqa: AL106` (AL106: no finding)",
        "remove the comment: the layer it covers no longer has that finding")]


def test_partly_used_noqa_names_the_codes_that_did_not_fire(tmp_path):
    path = write_model(tmp_path / "m.py", comment="# archlint: noqa: AL106, AL999")
    out = check(path, "--warn-unused-noqa")
    assert out["findings"] == [(
        "AL001", POS_LINE, "unused suppression `# archlint: noqa: AL106, AL999` "
        "(AL999: unknown rule)", "keep only the codes that fire: `# archlint: noqa: AL106`")]
    ignored = check(path, "--warn-unused-noqa", "--ignore", "AL106")
    assert ignored["findings"][0][2].endswith("(AL106: not enabled; AL999: unknown rule)")


def test_unused_bare_noqa_anywhere_in_the_model_file(tmp_path):
    path = write_model(tmp_path / "m.py", rows=8192)
    path.write_text(path.read_text() + "\nCONSTANT = 3  # archlint: noqa\n")
    line = len(path.read_text().splitlines())
    out = check(path, "--warn-unused-noqa")
    assert out["findings"] == [("AL001", line, "unused suppression `# archlint: noqa`",
                                "remove the comment: the layer it covers no longer has that "
                                "finding")]


def test_unused_noqa_severity_is_a_rule_option(tmp_path, monkeypatch):
    write_model(tmp_path / "m.py", rows=8192, comment="# archlint: noqa")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.archlint]\nwarn_unused_noqa = true\n[tool.archlint.rules.AL001]\n"
        "severity = \"info\"\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "m.py", "--seq-len", "4k"])
    assert result.exit_code == 0, result.output
    assert f"m.py:{POS_LINE}: AL001 [info] unused suppression" in result.output


def test_identical_files_share_analysis_but_not_locations_or_suppressions(tmp_path):
    """Byte-identical models are analyzed once; each keeps its paths and noqa comments."""
    first = write_model(tmp_path / "a.py")
    second = tmp_path / "b.py"
    second.write_text(first.read_text())
    session = CheckSession(overrides={"seq_len": "4k"}, isolated=True)
    reports = session.check([str(first), str(second), str(first)])
    assert (session.analyzed, session.reused) == (1, 1)
    assert [[(f.code, str(f.location)) for f in r.findings] for r in reports] == [
        [("AL106", f"{first}:{POS_LINE}")], [("AL106", f"{second}:{POS_LINE}")]]
    assert [r.model.name for r in reports] == [f"{first}:Tiny", f"{second}:Tiny"]
    assert {layer.location.file for layer in reports[1].layers} == {str(second)}
    assert str(first) not in json.dumps(reports[1].to_dict(), default=str)
    assert str(second) not in json.dumps(reports[0].to_dict(), default=str)

    for path in (first, second):
        write_model(path, comment="# archlint: noqa: AL106")
    session = CheckSession(overrides={"seq_len": "4k", "warn_unused_noqa": True},
                           isolated=True)
    reports = session.check([str(first), str(second)])
    assert (session.analyzed, session.reused) == (1, 1)
    assert [r.findings for r in reports] == [[], []]       # no AL001 from the shared copy

    write_model(second)                                     # differs by the comment now
    session = CheckSession(overrides={"seq_len": "4k"}, isolated=True)
    reports = session.check([str(first), str(second)])
    assert (session.analyzed, session.reused) == (2, 0)
    assert [[f.code for f in r.findings] for r in reports] == [[], ["AL106"]]


def test_reused_analysis_sections_point_at_their_own_file(tmp_path):
    source = (Path(__file__).resolve().parent.parent / "fixtures" / "cnn_stack_k3.py")
    first, second = tmp_path / "a.py", tmp_path / "b.py"
    for path in (first, second):
        path.write_text(source.read_text())
    session = CheckSession(overrides={"seq_len": 512, "dynamic": False}, isolated=True)
    reports = session.check([str(first), str(second)])
    assert (session.analyzed, session.reused) == (1, 1)
    rows = [report.reach.to_dict()["layers"] for report in reports]
    assert len(rows[0]) == 8                               # the 8 convolutions
    assert [row["location"] for row in rows[1]] == [
        row["location"].replace(str(first), str(second)) for row in rows[0]]
    assert all(row["location"].startswith(str(second)) for row in rows[1])
