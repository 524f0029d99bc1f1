"""docs/json-schema.md documents every key the JSON report emits (so it stays true)."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from conftest import ROOT

from archlint.cli import main
from archlint.report import SCHEMA_VERSION


def test_every_emitted_key_is_documented():
    doc = (ROOT / "docs" / "json-schema.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    result = CliRunner().invoke(main, ["check", "fixtures/gpt_sdpa.py", "--seq-len", "1k,2k",
                                       "--memory", "1GB", "--span", "64", "--format", "json"])
    document = json.loads(result.stdout)
    assert f"schema version {SCHEMA_VERSION}" in doc
    report = document["reports"][0]
    sections = {
        "report": report, "reach": report["reach"], "cost": report["cost"],
        "cost.lengths": report["cost"]["lengths"][0], "cost.curve": report["cost"]["curve"],
        "reach.causality": report["reach"]["causality"],
        "finding": report["findings"][0], "layer": report["layers"][0],
        "settings": report["settings"],
    }
    missing = {name: sorted(set(value) - documented) for name, value in sections.items()}
    assert {name: keys for name, keys in missing.items() if keys} == {}
