"""``archlint profile``: measured beside predicted, traces, and refusing what won't fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archlint.errors import ArchlintError
from archlint.profile import command, format_profile, run_profile
from archlint.settings import make_settings


def test_measured_peak_matches_the_prediction_and_a_trace_is_written(tmp_path):
    lines = []
    report = run_profile("fixtures/gpt_sdpa.py", make_settings(seq_len="64,200"), str(tmp_path),
                         echo=lines.append)
    assert [row.status for row in report.rows] == ["measured", "measured"]
    for row in report.rows:
        assert row.measured.peak == row.predicted            # CPU: exact to the byte
        assert row.measured.forward_s > 0 and row.measured.backward_s > 0
        assert row.measured.tokens_per_s == pytest.approx(row.seq_len / row.measured.step_s)
        traces = list(Path(row.trace).glob("*.pt.trace.json"))
        assert len(traces) == 1
        events = json.loads(traces[0].read_text())["traceEvents"]
        assert any(event.get("name") == "[memory]" for event in events)
    text = format_profile(report)
    assert "+0.0%" in text and str(tmp_path) in text
    assert report.to_dict()["lengths"][0]["relative_error"] == 0.0


def test_a_length_that_would_not_fit_is_refused_and_never_started(tmp_path, monkeypatch):
    monkeypatch.setattr(command, "free_memory", lambda device: 1_000_000)
    monkeypatch.setattr(command, "measure_step", lambda *a, **k: pytest.fail("started"))
    lines = []
    report = run_profile("fixtures/gpt_sdpa.py", make_settings(seq_len="128"), str(tmp_path),
                         echo=lines.append)
    (row,) = report.rows
    assert row.measured is None and row.status.startswith("refused: predicted")
    assert "1.0 MB free" in row.status and "not started" in lines[0]


def test_a_failing_real_run_is_reported(tmp_path):
    """gpt_sdpa.py's positional table has 256 rows: the real forward at 512 raises."""
    report = run_profile("fixtures/gpt_sdpa.py", make_settings(seq_len="512", mode="infer"),
                         str(tmp_path), echo=lambda line: None)
    assert report.rows[0].status.startswith("failed: IndexError")


def test_decode_is_not_measured(tmp_path):
    with pytest.raises(ArchlintError, match="--mode train or --mode infer"):
        run_profile("fixtures/gpt_sdpa.py", make_settings(mode="decode"), str(tmp_path))


def test_free_memory_reads_meminfo():
    free = command.free_memory("cpu")
    meminfo = Path("/proc/meminfo").read_text().split("MemAvailable:")[1].split()[0]
    assert abs(free - int(meminfo) * 1024) < 256 * 2**20
