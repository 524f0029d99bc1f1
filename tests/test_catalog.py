"""The rule catalog: `archlint rules`, `archlint explain`, and the generated rules/ folder."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archlint.catalog import main, render_catalog, stale_pages
from archlint.cli import main as cli
from archlint.rules import all_rules, documentation

SECTIONS = ("## What it does", "## Why is this bad?", "## Example", "## Fix")


def test_rules_folder_is_up_to_date():
    stale = stale_pages()
    assert not stale, (f"rules/ is out of date ({', '.join(stale)}): "
                       "run `python -m archlint.catalog` (or `make rules-docs`)")


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule.code)
def test_every_rule_documents_the_four_sections(rule):
    doc = documentation(rule)
    positions = [doc.find(section) for section in SECTIONS]
    assert all(p > 0 for p in positions) and positions == sorted(positions), rule.code
    page = render_catalog()[f"{rule.code}.md"]
    assert page.splitlines()[2] == f"# {rule.code}: {rule.name}"
    assert f"- Default severity: **{rule.severity}**" in page
    assert f"`# archlint: noqa: {rule.code}`" in page
    for section in SECTIONS:
        assert f"\n{section}\n" in page                       # headings at column 0
    for option, default in rule.options.items():
        assert f"| `{option}` |" in page and str(default).lower() in page.lower()


def test_index_links_every_rule_once():
    index = render_catalog()["README.md"]
    for rule in all_rules():
        assert index.count(f"[{rule.code}]({rule.code}.md)") == 1
        assert f"| {rule.name} | {rule.severity} | {rule.summary()} |" in index


def test_check_mode_finds_stale_missing_and_extra_pages(tmp_path, capsys):
    folder = tmp_path / "rules"
    assert main(["--dir", str(folder)]) == 0                   # generate from scratch
    assert main(["--check", "--dir", str(folder)]) == 0
    capsys.readouterr()
    first = sorted(folder.glob("AL*.md"))[0]
    first.write_text(first.read_text() + "hand edit\n")
    (folder / "README.md").unlink()
    (folder / "AL999.md").write_text("a removed rule\n")
    assert main(["--check", "--dir", str(folder)]) == 1
    out = capsys.readouterr().out
    for name in (first.name, "README.md", "AL999.md"):
        assert f"{folder / name}: out of date; run `python -m archlint.catalog`" in out
    assert main(["--dir", str(folder)]) == 0                   # regenerate
    assert stale_pages(folder) == [] and not (folder / "AL999.md").exists()


def test_rules_command_lists_code_name_severity_summary():
    result = CliRunner().invoke(cli, ["rules"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["code", "name", "severity", "summary"]
    for rule in all_rules():
        row = next(line for line in lines if line.startswith(rule.code + " "))
        assert row.split()[:3] == [rule.code, rule.name, rule.severity]
        assert row.rstrip().endswith(rule.summary())


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule.code)
def test_explain_prints_the_documentation_unindented(rule):
    result = CliRunner().invoke(cli, ["explain", rule.code.lower()])
    assert result.exit_code == 0
    assert result.output.startswith(f"{rule.code} {rule.name} ({rule.severity})\n\n")
    for section in SECTIONS:
        assert f"\n{section}\n" in result.output
