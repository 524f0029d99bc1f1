"""Output formats end to end: SARIF against the official schema, GitHub annotations,
text at 80 columns with folded blocks, color only when asked or on a terminal."""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from archlint.cli import main
from archlint.findings import Finding
from archlint.format import FormatOptions, render
from archlint.format.github import annotation
from archlint.format.text import fold_repeats
from archlint.graph import SourceLocation
from archlint.rules import all_rules
from archlint.session import CheckSession

ROOT = Path(__file__).resolve().parent.parent
VENDORED_SCHEMA = ROOT / "tests" / "data" / "sarif-schema-2.1.0.json"
SHARED_SCHEMA = Path("reference") / "sarif" / "sarif-schema-2.1.0.json"
MODELS = ["fixtures/transformer_model.py", "fixtures/gpt_sdpa.py",
          "fixtures/conv_transformer.py", "fixtures/tcn_causal.py", "fixtures/cnn_model.py"]
HEADLINE = re.compile(r"^\S+:\d+: AL\d{3} \[(error|warning|info)\] ")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shared_schema() -> Path:
    """The official schema in the shared reference data: under ``$ARCHLINT_SHARED`` when
    set, else ``../shared`` beside the clone (as CI has it), else ``/work/shared`` (a
    worktree). Missing, the test fails: only ``ARCHLINT_ALLOW_NO_SHARED=1``, a machine
    that says it has no shared data, turns that into a skip."""
    if os.environ.get("ARCHLINT_SHARED"):
        candidates = [Path(os.environ["ARCHLINT_SHARED"])]
    else:
        candidates = [ROOT.parent / "shared", Path("/work/shared")]
    for folder in candidates:
        if (folder / SHARED_SCHEMA).is_file():
            return folder / SHARED_SCHEMA
    where = " or ".join(str(folder / SHARED_SCHEMA) for folder in candidates)
    if os.environ.get("ARCHLINT_ALLOW_NO_SHARED") == "1":
        pytest.skip(f"no shared SARIF schema at {where} (ARCHLINT_ALLOW_NO_SHARED=1)")
    pytest.fail(f"no shared SARIF schema at {where}: set ARCHLINT_SHARED to the shared "
                "reference data", pytrace=False)


@pytest.fixture(scope="module")
def reports():
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return CheckSession(overrides={"seq_len": "4k", "dynamic": False},
                            isolated=True).check(MODELS)
    finally:
        os.chdir(cwd)


def finding_at(reports, code: str) -> tuple:
    for report in reports:
        for finding in report.findings:
            if finding.code == code:
                return report, finding
    raise AssertionError(f"no {code} finding")


# ------------------------------------------------------------------------------ SARIF


@pytest.mark.parametrize("which", ["vendored", "shared"])
def test_sarif_validates_against_the_official_schema(reports, which):
    schema_path = VENDORED_SCHEMA if which == "vendored" else shared_schema()
    schema = json.loads(schema_path.read_text())
    document = json.loads(render(reports, "sarif"))
    jsonschema.Draft4Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(document), key=str)
    assert not errors, errors[0].message
    empty = json.loads(render(reports[:0], "sarif"))
    assert not list(jsonschema.Draft4Validator(schema).iter_errors(empty))


def test_vendored_schema_is_the_shared_one():
    assert VENDORED_SCHEMA.read_bytes() == shared_schema().read_bytes()


def test_sarif_results_are_what_code_scanning_needs(reports):
    run = json.loads(render(reports, "sarif"))["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [rule.code for rule in all_rules()]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == ROOT.as_uri() + "/"
    expected = [(f.code, f.location.file, f.location.line)
                for r in reports for f in r.findings]
    assert len(run["results"]) == len(expected) > 0
    for result, (code, file, line) in zip(run["results"], expected):
        assert result["ruleId"] == code and rules[result["ruleIndex"]]["id"] == code
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": file, "uriBaseId": "%SRCROOT%"}
        assert physical["region"] == {"startLine": line}
        assert len(result["partialFingerprints"]["archlintFinding/v1"]) == 32
    al106 = next(rule for rule in rules if rule["id"] == "AL106")
    assert al106["defaultConfiguration"] == {"level": "error"}
    assert "## Why is this bad?" in al106["help"]["markdown"]
    assert al106["help"]["text"].startswith("Positional table has fewer positions")


def test_sarif_places_a_finding_without_location_at_the_model_class(reports):
    report, finding = finding_at(reports, "AL106")
    moved = dataclasses.replace(report, findings=[dataclasses.replace(finding, location=None)])
    result = json.loads(render([moved], "sarif"))["runs"][0]["results"][0]
    physical = result["locations"][0]["physicalLocation"]
    root = report.graph.locations[""]
    assert physical["artifactLocation"]["uri"] == root.file
    assert physical["region"]["startLine"] == root.line
    source = (ROOT / root.file).read_text().splitlines()
    assert source[root.line - 1].startswith("class ")


def test_sarif_uris_are_relative_to_the_repository_root_from_a_subdirectory(monkeypatch):
    monkeypatch.chdir(ROOT / "fixtures")
    result = CliRunner().invoke(main, ["check", "transformer_model.py", "--seq-len", "4k",
                                       "--isolated", "--no-dynamic", "--select", "AL106",
                                       "--format", "sarif"])
    assert result.exit_code == 1
    location = json.loads(result.output)["runs"][0]["results"][0]["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == \
        "fixtures/transformer_model.py"


# ----------------------------------------------------------------------------- GitHub


def _parse_workflow_command(line: str) -> tuple[str, dict[str, str], str]:
    """How the Actions runner reads ``::cmd k=v,k=v::data`` (its documented escapes)."""
    match = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line)
    assert match, line
    def unescape(text, props=False):
        if props:
            text = text.replace("%3A", ":").replace("%2C", ",")
        return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
    properties = dict(item.split("=", 1) for item in match[2].split(","))
    return match[1], {k: unescape(v, True) for k, v in properties.items()}, unescape(match[3])


def test_github_annotations_point_at_the_layer_line(reports):
    lines = render(reports, "github").splitlines()
    expected = [(r, f) for r in reports for f in r.findings]
    assert len(lines) == len(expected)
    for line, (report, finding) in zip(lines, expected):
        command, properties, message = _parse_workflow_command(line)
        assert command == {"error": "error", "warning": "warning", "info": "notice"}[
            finding.severity]
        assert properties == {"file": finding.location.file,
                              "line": str(finding.location.line),
                              "title": f"{finding.code} {finding.rule}"}
        assert message == f"{finding.message} ({report.model.name})\nfix: {finding.fix}"
    assert lines[0].startswith("::error file=fixtures/transformer_model.py,line=23,"
                               "title=AL106 positional-table-too-short::positional table pos")


def test_github_escapes_what_the_runner_would_misread(reports):
    report, _ = finding_at(reports, "AL106")
    finding = Finding("AL106", "positional-table-too-short", "warning",
                      "100% of rows: a, b\r\nsecond line", "fix: it", SourceLocation(
                          "dir,with:odd/model.py", 7))
    line = annotation(finding, report, ROOT)
    assert "\n" not in line and "\r" not in line
    command, properties, message = _parse_workflow_command(line)
    assert command == "warning"
    assert properties["file"] == "dir,with:odd/model.py" and properties["line"] == "7"
    assert message.startswith("100% of rows: a, b\r\nsecond line (")


# ------------------------------------------------------------------------------- text


def test_text_fits_80_columns_except_finding_headlines(reports):
    """Header, layer table and findings (what format/text.py lays out) fit 80 columns;
    the analysis sections render themselves (Section.render_text)."""
    from archlint.format.text import _header, layer_table, render_findings

    options = FormatOptions(width=80)
    for report in reports:
        parts = [_header(report, options), layer_table(report, 80),
                 render_findings(report.findings, options)]
        lines = "\n".join(parts).splitlines()
        long = [line for line in lines if len(line) > 80 and not HEADLINE.match(line)]
        assert not long, long
    assert "\x1b[" not in render(reports, "text")


def test_repeated_blocks_fold_into_one_row(reports):
    gpt = next(r for r in reports if r.model.name.startswith("fixtures/gpt_sdpa.py"))
    rows = [name for name, _ in fold_repeats(gpt.layers)]
    per_block = {re.sub(r"^blocks\.\d+\.", "", layer.name) for layer in gpt.layers
                 if layer.name.startswith("blocks.")}
    assert len(per_block) == 8                       # ln1 qkv proj ln2 fc act proj + sdpa
    assert len(rows) == len(gpt.layers) - len(per_block)           # 2 blocks -> 1 row each
    assert "blocks.0-1.ln1" in rows
    assert "blocks.0-1.attn:scaled_dot_product_attention" in rows
    from archlint.format.text import layer_table

    table = layer_table(gpt)
    assert "blocks.0-1.ln1 " in table and "blocks.1." not in table


def test_fold_keeps_layers_that_differ():
    from archlint.graph import Layer
    from archlint.kinds import LayerKind

    where = SourceLocation("m.py", 3)
    layers = [Layer(f"convs.{i}", LayerKind.CONV, "Conv1d", {"dilation": d}, where)
              for i, d in enumerate((1, 2, 2, 2))]
    layers.append(Layer("convs.7", LayerKind.CONV, "Conv1d", {"dilation": 2}, where))
    assert [name for name, _ in fold_repeats(layers)] == ["convs.0", "convs.{1,2,3,7}"]


def test_text_is_deterministic_and_color_only_when_asked():
    args = ["check", "fixtures/transformer_model.py", "--seq-len", "4k", "--isolated",
            "--no-dynamic"]
    plain = CliRunner().invoke(main, args)
    assert plain.output == CliRunner().invoke(main, args + ["--color", "never"]).output
    assert "\x1b[" not in plain.output                       # CliRunner is not a terminal
    colored = CliRunner().invoke(main, args + ["--color", "always"])
    assert "\x1b[31m\x1b[1mAL106\x1b[0m" in colored.output    # red, bold code
    assert ANSI.sub("", colored.output) == plain.output


def test_color_auto_turns_on_for_a_real_terminal():
    args = [sys.executable, "-m", "archlint", "check", "fixtures/cnn_model.py", "--isolated",
            "--no-dynamic"]
    output = _run_in_terminal(args, {})
    assert "\x1b[1mfixtures/cnn_model.py:build_model\x1b[0m" in output


def test_color_auto_respects_no_color(monkeypatch):
    from archlint.cli import _color

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _color("auto") and _color("always") and not _color("never")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _color("auto") and _color("always")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    monkeypatch.delenv("NO_COLOR")
    assert not _color("auto")


def _run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdout=follower, stderr=subprocess.DEVNULL,
                               cwd=ROOT, env={**os.environ, **env})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode()


def test_output_file_gets_the_report(tmp_path):
    target = tmp_path / "out.sarif"
    result = CliRunner().invoke(main, ["check", "fixtures/transformer_model.py", "--seq-len",
                                       "4k", "--isolated", "--no-dynamic", "--format", "sarif",
                                       "-o", str(target)])
    assert result.exit_code == 1 and result.output == ""
    assert json.loads(target.read_text())["runs"][0]["results"][0]["ruleId"] == "AL106"


def test_every_format_is_byte_deterministic():
    """Two independent runs (fresh sessions: load, trace, analyze, gradient probes
    included) give the same bytes."""
    def run_once():
        reports = CheckSession(overrides={"seq_len": "4k"},
                               isolated=True).check(["fixtures/transformer_model.py",
                                                     "fixtures/cnn_model.py"])
        return {fmt: render(reports, fmt) for fmt in ("text", "json", "sarif", "github")}

    first, second = run_once(), run_once()
    for output_format in first:
        assert first[output_format] == second[output_format], output_format


#: RFC 3986 URI-reference characters: unreserved, reserved (gen- and sub-delims), %HH
URI_REFERENCE = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-F]{2})*")


def test_sarif_uris_are_percent_encoded_for_paths_with_spaces(tmp_path, monkeypatch):
    """A model under ``my models/gpt model #1.py``: the artifact URI is
    ``my%20models/gpt%20model%20%231.py``, an RFC 3986 reference that resolves against
    ``%SRCROOT%`` back to the file; the document still validates against the schema."""
    from urllib.parse import unquote, urljoin, urlparse

    folder = tmp_path / "my models"
    folder.mkdir()
    model = folder / "gpt model #1.py"
    model.write_text((ROOT / "fixtures" / "transformer_model.py").read_text())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", str(model.relative_to(tmp_path)), "--seq-len",
                                       "4k", "--isolated", "--no-dynamic", "--select", "AL106",
                                       "--format", "sarif"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    run = document["runs"][0]
    base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base == tmp_path.as_uri() + "/"
    uris = [location["physicalLocation"]["artifactLocation"]["uri"]
            for result in run["results"] for location in result["locations"]]
    assert uris and set(uris) == {"my%20models/gpt%20model%20%231.py"}
    for uri in uris:
        assert URI_REFERENCE.fullmatch(uri), uri
        assert unquote(urlparse(urljoin(base, uri)).path) == str(model)
    for schema_path in (VENDORED_SCHEMA, shared_schema()):
        schema = json.loads(schema_path.read_text())
        validator = jsonschema.Draft4Validator(
            schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        assert not list(validator.iter_errors(document))


# ------------------------------------------------------------------ golden text reports

#: torchinfo's golden outputs: the whole text report of three bundled models, pinned in
#: tests/snapshots/reports/<name>.txt (``pytest --snapshot-update`` rewrites them). The
#: gradient probe runs only on the conv stack (its ERF column); every figure comes from
#: fake tensors or a fixed seed, and paths are relative to the repository.
GOLDEN = {
    "cnn_stack_k3": ["fixtures/cnn_stack_k3.py", "--span", "512"],
    "lstm_model": ["fixtures/lstm_model.py", "--seq-len", "1024", "--latency", "200ms",
                   "--no-dynamic"],
    "gpt_sdpa": ["fixtures/gpt_sdpa.py", "--seq-len", "512", "--memory", "4MB", "--mode",
                 "infer", "--no-dynamic"],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_text_report_matches_its_golden_output(name, request):
    from snapshot_helpers import assert_snapshot

    result = CliRunner().invoke(main, ["check", *GOLDEN[name], "--isolated",
                                       "--format", "text"])
    assert result.exit_code == 1, result.output           # every one has a finding
    assert str(ROOT) not in result.stdout                 # nothing machine-specific
    assert_snapshot(request.config, f"reports/{name}.txt", result.stdout)
