"""``archlint profile``: measured beside predicted, traces, and refusing what won't fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archlint import memlimit
from archlint.errors import ArchlintError
from archlint.memlimit import MemoryLimit
from archlint.profile import command, format_profile, run_profile
from archlint.settings import make_settings
from archlint.units import format_bytes


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
    monkeypatch.setattr(command, "free_memory",
                        lambda device: MemoryLimit(1_000_000, "cgroup memory.max of /x"))
    monkeypatch.setattr(command, "measure_step", lambda *a, **k: pytest.fail("started"))
    lines = []
    report = run_profile("fixtures/gpt_sdpa.py", make_settings(seq_len="128"), str(tmp_path),
                         echo=lines.append)
    (row,) = report.rows
    assert row.measured is None and row.status.startswith("refused: predicted")
    assert "1.0 MB free (cgroup memory.max of /x)" in row.status and "not started" in lines[0]


def test_a_failing_real_run_is_reported(tmp_path):
    """gpt_sdpa.py's positional table has 256 rows: the real forward at 512 raises."""
    report = run_profile("fixtures/gpt_sdpa.py", make_settings(seq_len="512", mode="infer"),
                         str(tmp_path), echo=lambda line: None)
    assert report.rows[0].status.startswith("failed: IndexError")


def test_decode_is_not_measured(tmp_path):
    with pytest.raises(ArchlintError, match="--mode train or --mode infer"):
        run_profile("fixtures/gpt_sdpa.py", make_settings(mode="decode"), str(tmp_path))


def test_free_memory_is_the_tightest_limit_and_meminfo_bounds_it():
    limit = command.free_memory("cpu")
    meminfo = Path("/proc/meminfo").read_text().split("MemAvailable:")[1].split()[0]
    assert limit.free <= int(meminfo) * 1024 + 256 * 2**20
    assert limit == min(memlimit.limits(), key=lambda found: found.free) or \
        abs(limit.free - memlimit.memory_limit().free) < 256 * 2**20


NUMPY_MODEL = "tests/hostile/numpy_outside_torch.py"
NUMPY_BYTES = 1024 * 25_000 * 8          # np.ones((n, 25_000)) float64 at n=1024


def test_memory_outside_torch_shows_as_resident_growth_beside_torchs_figure(tmp_path):
    report = run_profile(NUMPY_MODEL, make_settings(seq_len="1024", mode="infer"),
                         str(tmp_path), echo=lambda line: None)
    (row,) = report.rows
    measured = row.measured
    assert row.status == "measured"
    assert abs(measured.peak - row.predicted) < 1024      # torch sees only the Linear
    assert measured.step_peak < 1_000_000
    # pages freed before the step and reused by it are resident already: within 1 MiB
    assert NUMPY_BYTES - 2**20 <= measured.rss_step < NUMPY_BYTES + 64 * 2**20
    assert report.to_dict()["lengths"][0]["measured_rss_step_bytes"] == measured.rss_step
    assert "RSS +step" in format_profile(report)


def test_the_next_length_counts_what_the_last_one_took_outside_torch(tmp_path, monkeypatch):
    """100 MB free: n=1024's torch peak (kB) fits, and its 205 MB of numpy is measured;
    n=1040 is predicted at kB too, but with that numpy memory scaled it cannot fit."""
    monkeypatch.setattr(command, "free_memory",
                        lambda device: MemoryLimit(100 * 10**6, "RLIMIT_DATA"))
    lines = []
    report = run_profile(NUMPY_MODEL, make_settings(seq_len="1024,1040", mode="infer"),
                         str(tmp_path), echo=lines.append)
    first, second = report.rows
    assert first.status == "measured"
    outside = first.measured.rss_step - first.measured.step_peak
    assert outside >= NUMPY_BYTES - 2**20
    assert second.measured is None
    scaled = int(outside * max(1.0, second.predicted / first.predicted))
    assert second.status == (
        f"refused: predicted {format_bytes(second.predicted)} (+10%) + "
        f"{format_bytes(scaled)} outside torch (as at n=1024) exceeds the 100.0 MB free "
        "(RLIMIT_DATA)")
