"""Every length limit of a Hugging Face model is a finding (issue 15), at the length the
architecture is known to fail: a table of ``rows`` rows read from row ``offset`` holds
``rows - offset`` positions, so the first length that fails is one more."""

from __future__ import annotations

import pytest

import archlint
from archlint.classify import classify
from archlint.load import load_module
from archlint.report import ModelInfo, Report
from archlint.rules import run_rules
from archlint.settings import make_settings
from archlint.trace import trace_model

pytestmark = pytest.mark.models
zoo = pytest.importorskip("hf_zoo", reason="needs the [models] extra")


def static_findings(model, code: str, seq_len: int):
    """The rule's findings from classification alone (AL106 needs no cost run)."""
    graph = classify(trace_model(load_module(model)))
    settings = make_settings(None, seq_len=seq_len, select=[code])
    report = Report(ModelInfo("m", None, type(model).__name__, 0, ""), settings, graph)
    return run_rules(report, settings)


@pytest.mark.parametrize("name, usable", [
    ("opt", lambda c: c.max_position_embeddings),             # 2050 rows, offset 2
    ("bart", lambda c: c.max_position_embeddings),            # 1026 rows, offset 2
    ("roberta", lambda c: c.max_position_embeddings - c.pad_token_id - 1),  # 514 - 2
    ("gpt-j", lambda c: c.n_positions),                       # the 2048-row sin/cos buffer
    ("codegen", lambda c: c.n_positions),
    ("distilbert", lambda c: c.max_position_embeddings),
])
def test_table_limit_is_the_first_length_that_fails(name, usable):
    model = zoo.model(name)
    limit = usable(model.config)
    assert static_findings(model, "AL106", limit) == []
    findings = static_findings(model, "AL106", limit + 1)
    assert findings and all(f"positions {limit}..{limit}" in f.message for f in findings)


def test_opt_message_names_rows_and_offset():
    model = zoo.model("opt")
    (finding,) = static_findings(model, "AL106", 4096)
    rows = model.config.max_position_embeddings + 2
    assert finding.message.startswith(
        f"positional table decoder.embed_positions holds {rows - 2} positions "
        f"({rows} rows read from row 2) < seq_len 4096")
    assert f"grow the table to {4096 + 2} rows" in finding.fix


def test_mpt_alibi_limit_quotes_the_failed_step():
    model = zoo.model("mpt")
    report = archlint.analyze(model, seq_len=4096, select=["AL106", "AL110"], dynamic=False)
    codes = [f.code for f in report.findings]
    assert codes == ["AL106"] * model.config.n_layers            # one table per block
    assert (f"broadcast a dimension of length {model.config.max_seq_len}"
            in report.findings[0].message)


def test_reformer_length_check_is_a_finding_with_its_words():
    model = zoo.model("reformer")
    report = archlint.analyze(model, seq_len=4096, select=["AL110"], dynamic=False)
    (finding,) = report.findings
    limit = model.config.max_position_embeddings
    assert finding.severity == "error"
    assert finding.message.startswith(
        "the model cannot run at n=4096: ValueError: Sequence Length: 4096 has to be "
        f"less or equal than config.max_position_embeddings {limit}")


def test_rotary_and_alibi_models_have_no_table_limit():
    for name in ("qwen2", "gpt-neox", "bloom", "falcon", "t5"):
        assert static_findings(zoo.model(name), "AL106", 1 << 16) == [], name
