"""[tool.archlint]: discovery, values, per-model entries, per-rule options, errors, CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from project_helpers import POS_LINE, write_model, write_pyproject

from archlint.cli import main
from archlint.config import config_for, find_config, load_config
from archlint.errors import ArchlintError
from archlint.settings import Settings


def test_nearest_pyproject_with_the_table_wins(tmp_path):
    write_pyproject(tmp_path, "[tool.archlint]\nseq_len = 1024\n")
    inner = tmp_path / "pkg"
    write_pyproject(inner, "[tool.black]\nline-length = 100\n")   # no [tool.archlint]: skipped
    model = write_model(inner / "models" / "m.py")
    assert find_config(model) == (tmp_path / "pyproject.toml").resolve()
    write_pyproject(inner / "models", "[tool.archlint]\nseq_len = 2048\n")
    assert config_for(str(model)).settings_for(str(model)).seq_len == (2048,)


def test_values_are_parsed_like_flags(tmp_path):
    path = write_pyproject(tmp_path, """
        [tool.archlint]
        seq_len = ["4k", 1024]
        memory = "16GB"
        span = "512"
        batch = 8
        dtype = "bfloat16"
        mode = "infer"
        latency = "50ms"
        max-serial-steps = 64
        causal = true
        select = ["al1", "AL201"]
        ignore = "AL106"
        fail_on = "error"
        """)
    settings = load_config(path).settings_for()
    assert settings.seq_len == (1024, 4096)
    assert settings.memory == 16 * 10**9
    assert (settings.span, settings.batch, settings.dtype, settings.mode) == (
        512, 8, "bfloat16", "infer")
    assert settings.latency_ms == 50.0
    assert settings.max_serial_steps == 64 and settings.causal is True
    assert settings.select == ("AL1", "AL201") and settings.ignore == ("AL106",)
    assert settings.fail_on == "error"


def test_overrides_beat_the_file(tmp_path):
    path = write_pyproject(tmp_path, '[tool.archlint]\nseq_len = "4k"\nmemory = "16GB"\n')
    settings = load_config(path).settings_for(None, {"seq_len": "512", "batch": "2"})
    assert settings.seq_len == (512,) and settings.batch == 2
    assert settings.memory == 16 * 10**9                     # not overridden: kept


def test_latency_units(tmp_path):
    for text, ms in (("0.2s", 200.0), ("800us", 0.8), (25, 25.0)):
        path = write_pyproject(tmp_path, f"[tool.archlint]\nlatency = {text!r}\n"
                               if isinstance(text, str) else f"[tool.archlint]\nlatency = {text}\n")
        assert load_config(path).settings_for().latency_ms == pytest.approx(ms)


def test_model_entries_apply_to_matching_files_in_order(tmp_path):
    path = write_pyproject(tmp_path, """
        [tool.archlint]
        models = ["models/*.py"]
        seq_len = "4k"

        [[tool.archlint.model]]
        path = "models/lstm_*.py"
        seq_len = "1k"
        memory = "8GB"

        [tool.archlint.model.rules.AL106]
        severity = "info"

        [[tool.archlint.model]]
        path = "models/lstm_big.py:Big"
        memory = "80GB"
        """)
    for name in ("gpt.py", "lstm_small.py", "lstm_big.py"):
        write_model(tmp_path / "models" / name)
    config = load_config(path)
    gpt = str(tmp_path / "models" / "gpt.py")
    small = str(tmp_path / "models" / "lstm_small.py")
    big = str(tmp_path / "models" / "lstm_big.py")
    assert config.settings_for(gpt).seq_len == (4096,)
    assert config.settings_for(gpt).rule_options == {}
    assert config.settings_for(small).seq_len == (1024,)
    assert config.settings_for(small).memory == 8 * 10**9
    assert config.settings_for(small).rule_options == {"AL106": {"severity": "info"}}
    assert config.settings_for(big).memory == 8 * 10**9      # :Big entry needs the attr
    assert config.settings_for(big + ":Big").memory == 80 * 10**9
    targets = config.model_targets()
    assert [t.rsplit("/", 1)[-1] for t in targets] == [
        "gpt.py", "lstm_big.py", "lstm_small.py", "lstm_big.py:Big"]


def test_rule_options_merge_file_then_overrides(tmp_path):
    path = write_pyproject(tmp_path, '[tool.archlint.rules.AL106]\nseverity = "warning"\n')
    config = load_config(path)
    assert config.settings_for().rule_option("AL106", "severity", "error") == "warning"
    settings = config.settings_for(None, {"rule_options": {"al106": {"severity": "info"}}})
    assert settings.rule_option("AL106", "severity", "error") == "info"


@pytest.mark.parametrize("body,message", [
    ("[tool.archlint]\nseqlen = 4096\n", "unknown key 'seqlen'; did you mean 'seq_len'?"),
    ("[tool.archlint]\nseq_len = \"lots\"\n", "seq_len = \"lots\": sequence length 'lots'"),
    ("[tool.archlint]\nmemory = \"16GX\"\n", "memory = \"16GX\": memory size"),
    ("[tool.archlint]\nmode = \"fly\"\n", "mode = \"fly\""),
    ("[tool.archlint]\nbatch = 0\n", "batch = 0"),
    ("[tool.archlint]\nlatency = \"fast\"\n", "latency = \"fast\""),
    ("[tool.archlint]\nmemory = \"16GB\"\ndevice = \"a100\"\n",
     "device = \"a100\": unknown device 'a100'"),
    ("[tool.archlint.rules.AL999]\nseverity = \"error\"\n", "rules.AL999: unknown rule code"),
    ("[tool.archlint.rules.AL106]\nlimit = 3\n", "rules.AL106 has unknown option 'limit'"),
    ("[tool.archlint.rules.AL106]\nseverity = \"fatal\"\n", "rules.AL106.severity = \"fatal\""),
    ("[tool.archlint]\nmodels = 3\n", "models must be a list"),
    ("[tool.archlint]\nmodels = [\"nothing/*.py\"]\n", "'nothing/*.py' matches no file"),
    ("[[tool.archlint.model]]\nseq_len = 4\n", "#1 needs path"),
    ("[[tool.archlint.model]]\npath = \"m.py\"\nspan = \"x\"\n",
     "[[tool.archlint.model]] #1 span = \"x\""),
    ("[[tool.archlint.model]]\npath = \"m.py\"\nmodels = []\n", "unknown key 'models'"),
    ("[tool.archlint\n", "invalid TOML"),
])
def test_bad_config_names_the_key_and_the_file(tmp_path, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(body)
    with pytest.raises(ArchlintError) as error:
        config = load_config(tmp_path / "pyproject.toml")
        config.model_targets()
    text = str(error.value)
    assert text.startswith("pyproject.toml: "), text
    assert message in text, text
    assert "\n" not in text


def test_option_type_must_match_the_default(tmp_path):
    from archlint.config import _option_value

    assert _option_value(3, 2.5, "tolerance", "where") == 3          # int for a float: fine
    with pytest.raises(ArchlintError, match="expected a int like the default 2"):
        _option_value("3", 2, "limit", "where")
    with pytest.raises(ArchlintError, match="expected a bool"):
        _option_value(1, True, "strict", "where")


def test_isolated_ignores_every_file(tmp_path):
    write_pyproject(tmp_path, "[tool.archlint]\nseq_len = 1024\n")
    model = write_model(tmp_path / "m.py")
    assert config_for(str(model), isolated=True).settings_for(str(model)) == Settings()


# ------------------------------------------------------------------ through the CLI


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_check_without_targets_uses_configured_models(tmp_path, monkeypatch):
    write_pyproject(tmp_path, """
        [tool.archlint]
        models = ["models/*.py"]
        seq_len = "4k"
        select = ["AL106"]

        [[tool.archlint.model]]
        path = "models/short.py"
        seq_len = 256
        """)
    write_model(tmp_path / "models" / "long.py", rows=512)
    write_model(tmp_path / "models" / "short.py", rows=512)
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.exit_code == 1, result.output
    assert f"models/long.py:{POS_LINE}: AL106 [error] positional table pos has 512 rows < " \
           "seq_len 4096" in result.output
    assert "models/short.py:Tiny" in result.output                 # checked, at n=256: clean
    assert "models/short.py:9" not in result.output
    assert "1 finding in 1 of 2 models" in result.output
    assert run("check", "--seq-len", "512").exit_code == 0         # the flag beats the file


def test_rule_severity_from_config_changes_the_exit_code(tmp_path, monkeypatch):
    write_pyproject(tmp_path, """
        [tool.archlint]
        models = ["m.py"]
        seq_len = "4k"
        select = ["AL106"]

        [tool.archlint.rules.AL106]
        severity = "info"
        """)
    write_model(tmp_path / "m.py")
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.exit_code == 0, result.output
    assert f"m.py:{POS_LINE}: AL106 [info]" in result.output
    assert run("check", "--fail-on", "info").exit_code == 1


def test_explicit_config_file_and_errors_are_one_line(tmp_path, monkeypatch):
    other = tmp_path / "conf"
    write_pyproject(other, '[tool.archlint]\nseq_len = "4k"\nselect = ["AL106"]\n')
    model = write_model(tmp_path / "m.py", rows=2048)
    monkeypatch.chdir(tmp_path)
    assert run("check", str(model), "--select", "AL106").exit_code == 0    # default n=2048
    result = run("check", str(model), "--config", str(other / "pyproject.toml"))
    assert result.exit_code == 1 and "seq_len 4096" in result.output
    write_pyproject(tmp_path, "[tool.archlint]\nwidget = 1\n")
    bad = run("check", str(model))
    assert bad.exit_code == 2
    assert bad.output.startswith(
        "archlint: error: pyproject.toml: [tool.archlint] has unknown key 'widget'; known keys: ")
    assert bad.output.count("\n") == 1


def test_check_without_targets_or_config_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("check")
    assert result.exit_code == 2
    assert "no model given and no [tool.archlint] models" in result.output
