"""``archlint check --plot DIR``: the pictures exist, are PNGs, and plot the report's numbers.

Every fixture is drawn in one ``check`` run; the HTML page's embedded data is compared
with the JSON report of the same run (peak and FLOPs at each n, budget, largest n that
fits, crossover, R), the ERF profile with the probe's data and a window search done here,
and two runs of one model give the same bytes. Missing matplotlib and a bad folder are
one line, exit 2, before torch is imported.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT, fixture_files

from archlint.cli import main
from archlint.plot import INSTALL_HINT, stem_for
from archlint.plot.page import read_embedded

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: a PNG of a drawn figure is tens of kB; an empty canvas at this size is a few kB
MIN_PNG_BYTES = 20_000
LSTM = "fixtures/lstm_model.py"


def check(*args: str) -> dict:
    """``archlint check ARGS -o report.json``; the JSON report."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"archlint-plot-{os.getpid()}.json"
    result = CliRunner().invoke(main, ["check", *args, "--format", "json", "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink()


@cache
def every_fixture(folder: str) -> dict:
    """Every fixture in one run at n=128, without the probes (the budget search and the
    grid of longer lengths cost minutes over 31 models: the LSTM and transformer runs
    below have them)."""
    return check(*fixture_files(), "--seq-len", "128", "--no-dynamic", "--plot", folder)


@cache
def transformer(folder: str) -> dict:
    """``make example``'s run: n=4096 against 16 GB (budget search, crossover)."""
    return check("fixtures/transformer_model.py", "--seq-len", "4096", "--memory", "16GB",
                 "--span", "512", "--no-dynamic", "--plot", folder)


@cache
def lstm(folder: str) -> dict:
    """The LSTM fixture with its gradient probe, at two lengths against 64 MB."""
    return check(LSTM, "--seq-len", "1k,4k", "--memory", "64MB", "--plot", folder)


@pytest.fixture(scope="module")
def fixtures_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("every-fixture")


@pytest.fixture(scope="module")
def lstm_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lstm")


@pytest.fixture(scope="module")
def transformer_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("transformer")


def _page(folder: Path, report: dict) -> tuple[str, dict]:
    text = (folder / f"{stem_for(report['model']['name'])}.html").read_text()
    return text, read_embedded(text)


def _assert_png(path: Path) -> bytes:
    content = path.read_bytes()
    assert content[:8] == PNG_SIGNATURE, path
    assert len(content) > MIN_PNG_BYTES, (path, len(content))
    assert b"matplotlib" not in content and b"tEXt" not in content    # no version stamp
    return content


def test_every_fixture_gets_its_pictures_and_page(fixtures_folder):
    document = every_fixture(str(fixtures_folder))
    names = [r["model"]["name"] for r in document["reports"]]
    assert len(names) == len(fixture_files())
    for report in document["reports"]:
        stem = stem_for(report["model"]["name"])
        assert report["cost"]["lengths"], (stem, report["cost"]["failures"])
        for suffix in ("-cost.png", "-memory.png"):
            _assert_png(fixtures_folder / f"{stem}{suffix}")
        assert not (fixtures_folder / f"{stem}-erf.png").exists()      # --no-dynamic
        text, data = _page(fixtures_folder, report)
        assert "the gradient probe did not run (--no-dynamic)" in text
        assert data["reach"]["probe"] is None
    written = sorted(p.name for p in fixtures_folder.iterdir())
    assert len(written) == 3 * len(names)


def test_page_data_are_the_reports_figures(fixtures_folder):
    """Each plotted point is the report's: the curve's grid plus every --seq-len."""
    for report in every_fixture(str(fixtures_folder))["reports"]:
        cost, curve = report["cost"], report["cost"]["curve"]
        _, data = _page(fixtures_folder, report)
        plotted = data["cost"]
        points = dict(zip(curve["lengths"], zip(curve["peak_bytes"], curve["flops"])))
        points.update({e["seq_len"]: (e["peak_bytes"], e["flops"]) for e in cost["lengths"]})
        assert plotted["lengths"] == sorted(points)
        assert plotted["peak_bytes"] == [points[n][0] for n in sorted(points)]
        assert plotted["flops"] == [points[n][1] for n in sorted(points)]
        assert plotted["budget_bytes"] is cost["budget_bytes"] is None
        assert plotted["fits_up_to"] is curve["fits_up_to"] is None
        assert plotted["crossover"] == curve["crossover"]
        target = cost["lengths"][-1]
        assert plotted["target"]["seq_len"] == 128
        assert plotted["target"]["peak_bytes"] == target["peak_bytes"]
        assert plotted["target"]["memory"] == target["memory"]
        reach = report["reach"]["receptive_field"]
        plotted_rf = data["reach"]["receptive_field"]
        assert (plotted_rf == reach) if "expr" not in reach else (plotted_rf["n"] == reach)


def test_html_is_self_contained_and_embeds_the_pngs(fixtures_folder):
    report = every_fixture(str(fixtures_folder))["reports"][0]
    stem = stem_for(report["model"]["name"])
    text, _ = _page(fixtures_folder, report)
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 2
    embedded = [base64.b64decode(s.removeprefix("data:image/png;base64,")) for s in sources]
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert embedded == [(fixtures_folder / f"{stem}{suffix}").read_bytes()
                        for suffix in ("-cost.png", "-memory.png")]
    assert not re.search(r"(href|src)=\"(https?:)?//", text)
    assert "<link" not in text and "<script src" not in text


def test_erf_profile_is_the_probes_mass_against_the_static_field(lstm_folder):
    report = lstm(str(lstm_folder))["reports"][0]
    probe = report["reach"]["probe"]
    _assert_png(lstm_folder / f"{stem_for(report['model']['name'])}-erf.png")
    _, data = _page(lstm_folder, report)
    axis = data["reach"]["probe"]["axes"]["n"]
    origin = probe["aligned_input"]["n"]
    assert axis["mass"] == probe["mass_profile"]["n"]
    assert len(axis["mass"]) == probe["probe_len"]
    assert abs(sum(axis["mass"]) - 1.0) < 1e-9
    assert axis["offsets"] == [i - origin for i in range(probe["probe_len"])]
    first, last = probe["static_support"]["n"]
    assert axis["static_support"] == [first - origin, last - origin]
    # a causal LSTM: the static field ends at the output's own position, and no
    # gradient mass lies ahead of it
    assert axis["static_support"][1] == 0
    assert all(m == 0 for o, m in zip(axis["offsets"], axis["mass"]) if o > 0)
    # the ERF window, found here by trying every window that holds the probed position
    erf = report["reach"]["effective_receptive_field"]
    best = min((right - left + 1, left) for left in range(origin + 1)
               for right in range(origin, len(axis["mass"]))
               if sum(axis["mass"][left:right + 1]) >= 0.95 - 1e-12)
    assert best[0] == erf["span"] == axis["erf"]["span"]
    assert axis["erf"]["start"] == erf["start"] - origin


def test_cost_page_marks_budget_and_largest_fitting_length(lstm_folder):
    report = lstm(str(lstm_folder))["reports"][0]
    text, data = _page(lstm_folder, report)
    curve = report["cost"]["curve"]
    assert data["cost"]["seq_len"] == [1024, 4096]
    assert data["cost"]["budget_bytes"] == 64 * 10**6
    assert data["cost"]["fits_up_to"] == curve["fits_up_to"] > 4096
    assert f"largest n that fits: {curve['fits_up_to']}" in text


def test_budget_and_crossover_marks_agree_with_the_plotted_points(transformer_folder):
    """The marks are the report's, and the plotted points are on the right side of them:
    every point left of the largest fitting n fits the budget, every point right of it
    does not; attention FLOPs are below the rest left of the crossover, above it right."""
    report = transformer(str(transformer_folder))["reports"][0]
    curve = report["cost"]["curve"]
    text, data = _page(transformer_folder, report)
    cost = data["cost"]
    assert cost["budget_bytes"] == 16 * 10**9 and cost["fits_up_to"] == curve["fits_up_to"]
    assert cost["crossover"] == curve["crossover"]
    assert max(cost["lengths"]) == 4096 < cost["fits_up_to"]
    assert min(cost["lengths"]) < cost["crossover"] < max(cost["lengths"])
    for n, peak, flops, attention in zip(cost["lengths"], cost["peak_bytes"], cost["flops"],
                                         cost["attention_flops"]):
        assert (peak <= cost["budget_bytes"]) == (n <= cost["fits_up_to"])
        assert (attention > flops - attention) == (n >= cost["crossover"]), n
    assert f"largest n that fits: {curve['fits_up_to']}" in text
    assert f"attention FLOPs overtake the rest at n≈{curve['crossover']}" in text
    for suffix in ("-cost.png", "-memory.png"):
        _assert_png(transformer_folder / f"{stem_for(report['model']['name'])}{suffix}")


def test_two_runs_write_the_same_bytes(lstm_folder, tmp_path):
    first = lstm(str(lstm_folder))
    # the answer cache must not answer a --plot run: it would leave the folder empty
    second = check(LSTM, "--seq-len", "1k,4k", "--memory", "64MB", "--plot", str(tmp_path))
    assert first == second
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 4 and sorted(p.name for p in lstm_folder.iterdir()) == names
    for name in names:
        assert (tmp_path / name).read_bytes() == (lstm_folder / name).read_bytes(), name


def _cli_without_torch(args: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    """``archlint ARGS`` in a fresh interpreter; prints whether torch got imported."""
    script = textwrap.dedent(f"""
        import sys
        {prelude}
        from archlint.cli import main
        try:
            main({args!r})
        except SystemExit as exit:
            print("torch imported" if "torch" in sys.modules else "no torch")
            sys.exit(exit.code)
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT)


def test_plot_without_matplotlib_says_how_to_install(tmp_path):
    folder = tmp_path / "pictures"
    process = _cli_without_torch(["check", LSTM, "--plot", str(folder)],
                                 prelude="sys.modules['matplotlib'] = None")
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1, process.stderr
    assert INSTALL_HINT in process.stderr and "matplotlib" in process.stderr
    assert process.stdout == "no torch\n"
    assert not folder.exists()


@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_plot_into_a_path_that_cannot_be_a_folder(tmp_path, where):
    (tmp_path / "a-file").write_text("not a folder")
    process = _cli_without_torch(["check", LSTM, "--plot", str(tmp_path / where)])
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1, process.stderr
    assert f"--plot {tmp_path / where}: {tmp_path / 'a-file'} is not a folder" in process.stderr
    assert process.stdout == "no torch\n"


def test_stems_are_file_names_and_distinct():
    taken: set[str] = set()
    for name, stem in [("fixtures/gpt.py:build_model", "gpt-build_model"),
                       ("other/gpt.py:build_model", "gpt-build_model-2"),
                       ("pkg.models:make large", "pkg.models-make_large"),
                       ("TinyLM", "TinyLM")]:
        assert stem_for(name, taken) == stem
        taken.add(stem)


# -- archlint advise --plot ---------------------------------------------------------------

SEED_LSTM = "fixtures/seed000_lstm.py"


def advise_json(*args: str) -> dict:
    """``archlint advise ARGS --format json -o advice.json``; the advice document."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"archlint-advice-{os.getpid()}.json"
    result = CliRunner().invoke(main, ["advise", *args, "--format", "json", "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink()


def _expected_points(document: dict, y_key: str) -> list[dict]:
    """The advice picture's points, rebuilt from ``advise --format json``: the position,
    then every evaluated suggestion in rank order, numbered as in the text table."""
    def point(label, key, index, standing):
        return {"label": label, "key": key, "index": index,
                "peak_bytes": standing["peak_bytes"], "flops": standing["flops"],
                "y": standing[y_key], "fits": standing["fits"],
                "reaches": standing["reaches"], "on_time": standing["on_time"]}

    points = [point("as is", "now", None, document["position"])]
    for index, suggestion in enumerate(document["suggestions"], 1):
        if suggestion["after"] is not None:
            points.append(point(f"{index}. {suggestion['title']}", suggestion["key"], index,
                                suggestion["after"]))
    return points


def test_advise_plot_draws_every_change_with_the_advices_numbers(tmp_path):
    args = (SEED_LSTM, "--seq-len", "4k", "--span", "1024", "--memory", "64MB",
            "--latency", "50ms", "--no-dynamic")
    document = advise_json(*args, "--plot", str(tmp_path))
    stem = stem_for(document["model"]["name"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{stem}{suffix}" for suffix in ("-advice.png", "-cost.png", "-memory.png", ".html"))
    for suffix in ("-advice.png", "-cost.png", "-memory.png"):
        _assert_png(tmp_path / f"{stem}{suffix}")
    text = (tmp_path / f"{stem}.html").read_text()
    data = read_embedded(text)["advice"]
    assert data["points"] == _expected_points(document, "dependency_path")
    assert data["y_axis"] == "dependency_path" and data["span"] == 1024
    assert data["budget_bytes"] == 64 * 10**6 == document["goals"]["budget_bytes"]
    assert data["max_path"] == document["goals"]["max_path"] == 256     # AL102's default
    # the recurrence: L(span) = span - 1 hops, one per step, as the model is; the TCN's
    # ten dilated layers (dilations 1..512) reach it in 10
    assert data["points"][0]["y"] == 1023
    tcn = next(p for p in data["points"] if p["key"] == "tcn")
    assert tcn["y"] == 10 and tcn["fits"] and tcn["reaches"] and tcn["on_time"]
    # the page says it in words too: the table rows and the embedded picture
    assert text.count("<tr><td>") >= len(data["points"])
    assert "Changes on the two axes at n=4096" in text
    advice_png = (tmp_path / f"{stem}-advice.png").read_bytes()
    assert base64.b64encode(advice_png).decode("ascii") in text
    # the same run's cost pictures are the check's: the target point is the position
    assert read_embedded(text)["cost"]["target"]["peak_bytes"] == \
        document["position"]["peak_bytes"]


def test_advise_plot_without_a_span_plots_serial_steps(tmp_path):
    document = advise_json("fixtures/transformer_model.py", "--seq-len", "4096",
                           "--memory", "16GB", "--no-dynamic", "--plot", str(tmp_path))
    stem = stem_for(document["model"]["name"])
    data = read_embedded((tmp_path / f"{stem}.html").read_text())["advice"]
    assert data["y_axis"] == "serial_steps" and data["span"] is None
    assert data["points"] == _expected_points(document, "serial_steps")
    # two encoder layers: two serial steps whatever n, before and after each change
    assert {p["y"] for p in data["points"]} == {2}
    assert len(data["points"]) == 1 + sum(s["after"] is not None
                                          for s in document["suggestions"]) > 2
    _assert_png(tmp_path / f"{stem}-advice.png")


def test_advise_plot_writes_the_same_bytes_twice(tmp_path):
    args = (SEED_LSTM, "--seq-len", "4k", "--span", "1024", "--no-dynamic")
    for folder in ("one", "two"):
        advise_json(*args, "--plot", str(tmp_path / folder))
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(names) == 4
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_advise_plot_without_matplotlib_says_how_to_install(tmp_path):
    folder = tmp_path / "pictures"
    process = _cli_without_torch(["advise", SEED_LSTM, "--span", "1024", "--plot",
                                  str(folder)], prelude="sys.modules['matplotlib'] = None")
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1, process.stderr
    assert "--plot needs matplotlib" in process.stderr and INSTALL_HINT in process.stderr
    assert process.stdout == "no torch\n"
    assert not folder.exists()
