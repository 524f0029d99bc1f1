"""Every rule's own cases (Fixit's VALID / INVALID): a flagged case produces a finding of
the rule's code, a clean case none; every rule has both; each flagged finding's message,
fix and location are pinned in ``tests/snapshots/rules/<CODE>.txt`` (Ruff's snapshots,
``pytest --snapshot-update`` rewrites them)."""

from __future__ import annotations

import json
from functools import cache

import pytest
from snapshot_helpers import SNAPSHOTS, assert_snapshot

from archlint.api import analyze
from archlint.findings import Finding
from archlint.rules import Rule, all_rules, rule_by_code

RULES = all_rules()


def settings_of(rule: type[Rule], overrides: dict) -> dict:
    return {**rule.case_settings, **overrides}


@cache
def _findings(path: str, settings_json: str) -> tuple[Finding, ...]:
    """One analysis per (fixture, settings), shared by every rule and test that asks."""
    return tuple(analyze(path, **json.loads(settings_json)).findings)


def findings_of(rule: type[Rule], path: str, overrides: dict) -> list[Finding]:
    settings = json.dumps(settings_of(rule, overrides), sort_keys=True)
    return [f for f in _findings(path, settings) if f.code == rule.code]


def cases(kind: str) -> list:
    return [pytest.param(rule.code, path, overrides, id=f"{rule.code}-{kind}-{i}")
            for rule in RULES for i, (path, overrides) in enumerate(getattr(rule, kind))]


def test_every_rule_has_flagged_and_clean_cases():
    missing = [f"{rule.code} ({kind})" for rule in RULES for kind in ("flagged", "clean")
               if not getattr(rule, kind)]
    assert not missing, f"rules without cases: {', '.join(missing)}"


@pytest.mark.parametrize(("code", "path", "overrides"), cases("flagged"))
def test_flagged_case_produces_the_rule(code, path, overrides):
    rule = rule_by_code(code)
    found = findings_of(rule, path, overrides)
    assert found, f"{code} did not fire on {path} with {settings_of(rule, overrides)}"
    assert all(f.rule == rule.name for f in found)


@pytest.mark.parametrize(("code", "path", "overrides"), cases("clean"))
def test_clean_case_does_not_produce_the_rule(code, path, overrides):
    rule = rule_by_code(code)
    found = findings_of(rule, path, overrides)
    assert not found, [f.message for f in found]


def snapshot_text(rule: type[Rule]) -> str:
    lines = [f"# {rule.code} {rule.name}: the findings of each flagged case "
             f"(archlint/rules/{rule.__module__.rsplit('.', 1)[1]}.py)",
             "# rewrite: pytest tests/test_rule_cases.py --snapshot-update"]
    for path, overrides in rule.flagged:
        lines += ["", f"## {path} {json.dumps(overrides, sort_keys=True)}"]
        for finding in findings_of(rule, path, overrides):
            where = str(finding.location) if finding.location else "(no location)"
            lines += [f"{where} [{finding.severity}]"
                      + (f" layer {finding.layer}" if finding.layer else ""),
                      f"message: {finding.message}", f"fix: {finding.fix}"]
    return "\n".join(lines)


@pytest.mark.parametrize("code", [rule.code for rule in RULES])
def test_findings_match_the_snapshot(code, request):
    rule = rule_by_code(code)
    assert_snapshot(request.config, f"rules/{code}.txt", snapshot_text(rule))


def test_no_snapshot_without_its_rule():
    stale = sorted(p.stem for p in (SNAPSHOTS / "rules").glob("*.txt")
                   if rule_by_code(p.stem) is None)
    assert not stale, f"snapshots of rules that no longer exist: {stale}"
