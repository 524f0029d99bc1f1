"""The one reader of ``[tool.archlint]``: project settings, model files, per-model settings.

The configuration of a model file is the nearest ``pyproject.toml`` at or above it that
has a ``[tool.archlint]`` table (ruff's rule; a ``pyproject.toml`` without the table is
passed over). Precedence, lowest first: archlint's defaults, ``[tool.archlint]``, every
``[[tool.archlint.model]]`` entry whose ``path`` matches the model (in file order), and
last the command line flags or API keyword arguments.

```toml
[tool.archlint]
models = ["models/*.py"]            # what `archlint check` (and the pre-commit hook) checks
seq_len = ["4k", "16k"]
memory = "24GB"                     # or: device = "a100-80gb"
span = 512
fail_on = "error"

[tool.archlint.rules.AL106]         # per-rule options, severity included
severity = "warning"

[[tool.archlint.model]]             # settings for the files matching path
path = "models/lstm_*.py"           # a glob, relative to this pyproject.toml; :NAME allowed
seq_len = "1k"
```

Keys may be written ``seq_len`` or ``seq-len``. An unknown key or a bad value is an
:class:`~archlint.errors.ArchlintError` naming the key and the file.
"""

from __future__ import annotations

import difflib
import glob
import json
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from archlint.errors import ArchlintError
from archlint.ruleinfo import info_by_code
from archlint.settings import SEVERITIES, Settings, make_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "pyproject.toml"

#: config key -> Settings field (make_settings parses the value)
SETTING_KEYS = {
    "seq_len": "seq_len", "span": "span", "memory": "memory", "device": "device",
    "batch": "batch", "dtype": "dtype", "mode": "mode", "optimizer": "optimizer",
    "latency": "latency_ms", "max_serial_steps": "max_serial_steps", "causal": "causal",
    "probe_len": "probe_len", "dynamic": "dynamic", "select": "select", "ignore": "ignore",
    "fail_on": "fail_on", "warn_unused_noqa": "warn_unused_noqa",
    "parallel": "parallel", "checkpoint": "checkpoint", "zero": "zero", "offload": "offload",
    "baseline": "baseline", "baseline_tolerance": "baseline_tolerance",
    "capacity_factor": "capacity_factor", "cuda_context": "cuda_context",
}
PROJECT_KEYS = frozenset(SETTING_KEYS) | {"models", "rules", "model", "timeout", "cache"}
#: seconds one model may take before its run is stopped (``--timeout``, config ``timeout``)
DEFAULT_TIMEOUT = 300.0
ENTRY_KEYS = frozenset(SETTING_KEYS) | {"path", "rules"}


@dataclass(frozen=True)
class ModelEntry:
    """One ``[[tool.archlint.model]]`` table: settings for the files matching ``path``."""

    path: str                                   # glob relative to the config root, or pkg.mod:attr
    values: dict[str, Any]
    rule_options: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ProjectConfig:
    """A parsed ``[tool.archlint]`` table (or none: ``path`` is None and everything empty)."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    entries: tuple[ModelEntry, ...] = ()
    timeout: float | None = None                # seconds; None: not set in this file
    cache: bool = True                          # ``cache = false``: never answer from the cache

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def label(self) -> str:
        return _display(self.path) if self.path else "<defaults>"

    def model_targets(self) -> list[str]:
        """The configured model files (``models`` then entry paths), as CLI targets."""
        targets: list[str] = []
        for pattern in self.models + tuple(entry.path for entry in self.entries):
            for target in self._expand(pattern):
                if target not in targets:
                    targets.append(target)
        return targets

    def settings_for(self, target: str | None = None, overrides: dict[str, Any] | None = None,
                     base: Settings | None = None) -> Settings:
        """Settings of one model: defaults < project < matching entries < ``overrides``."""
        settings = base or Settings()
        rule_options = _merge_rules(settings.rule_options, self.rule_options)
        settings = make_settings(settings, **self.values)
        for entry in self.entries:
            if target is not None and self._matches(entry.path, target):
                settings = make_settings(settings, **entry.values)
                rule_options = _merge_rules(rule_options, entry.rule_options)
        overrides = dict(overrides or {})
        rule_options = _merge_rules(rule_options, overrides.pop("rule_options", None) or {})
        settings = make_settings(settings, **overrides)
        return settings.with_(rule_options=rule_options)

    def _expand(self, pattern: str) -> list[str]:
        file_part, attr = _split_attr(pattern)
        if not _looks_like_path(file_part):
            return [pattern]
        matches = sorted(glob.glob(str(self.root / file_part), recursive=True))
        files = [m for m in matches if os.path.isfile(m)]
        if not files:
            raise ArchlintError(
                f"{self.label}: [tool.archlint] model path {pattern!r} matches no file; "
                "fix the path (relative to that pyproject.toml)")
        return [_display(Path(m)) + (f":{attr}" if attr else "") for m in files]

    def _matches(self, pattern: str, target: str) -> bool:
        file_part, attr = _split_attr(pattern)
        target_file, target_attr = _split_attr(target)
        if attr is not None and attr != target_attr:
            return False
        if not _looks_like_path(file_part) or not _looks_like_path(target_file):
            return file_part == target_file
        wanted = os.path.realpath(target_file)
        return any(os.path.realpath(m) == wanted
                   for m in glob.glob(str(self.root / file_part), recursive=True))


def find_config(start: str | os.PathLike[str]) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.archlint]`` table at or above ``start``."""
    directory = Path(start).resolve()
    if directory.is_file() or not directory.exists():
        directory = directory.parent
    for folder in (directory, *directory.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file() and _archlint_table(candidate) is not None:
            return candidate
    return None


def load_config(path: str | os.PathLike[str] | None) -> ProjectConfig:
    """Parse and validate the ``[tool.archlint]`` table of ``path`` (None: no config)."""
    if path is None:
        return ProjectConfig()
    path = Path(path)
    if not path.is_file():
        raise ArchlintError(f"{path}: no such config file; pass a pyproject.toml")
    table = _archlint_table(path.resolve())
    if table is None:
        raise ArchlintError(f"{_display(path)}: no [tool.archlint] table; add one or drop --config")
    return _parse(path, table)


def config_for(target: str | None, explicit: str | None = None,
               isolated: bool = False) -> ProjectConfig:
    """The configuration that applies to ``target`` (None: the working directory)."""
    if isolated:
        return ProjectConfig()
    if explicit is not None:
        return load_config(explicit)
    file_part, _ = _split_attr(target) if target else (None, None)
    start = file_part if file_part and _looks_like_path(file_part) else os.getcwd()
    return load_config(find_config(start))


# ---------------------------------------------------------------- parsing and validation


def _parse(path: Path, table: dict[str, Any]) -> ProjectConfig:
    label = _display(path)
    if not isinstance(table, dict):
        raise ArchlintError(f"{label}: tool.archlint must be a table ([tool.archlint]), "
                            f"not {_toml(table)}")
    _check_keys(table, PROJECT_KEYS, label, "[tool.archlint]")
    values = _setting_values(table, label, "[tool.archlint]")
    if "baseline" in values:                    # a path relative to this pyproject.toml
        values["baseline"] = _display(path.parent / values["baseline"])
    models = table.get("models", [])
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ArchlintError(f"{label}: [tool.archlint] models must be a list of paths or globs")
    raw_entries = table.get("model", [])
    if isinstance(raw_entries, dict):
        raw_entries = [raw_entries]
    if not isinstance(raw_entries, list):
        raise ArchlintError(f"{label}: [tool.archlint] model must be an array of tables "
                            "([[tool.archlint.model]])")
    entries = []
    for index, raw in enumerate(raw_entries):
        where = f"[[tool.archlint.model]] #{index + 1}"
        if not isinstance(raw, dict):
            raise ArchlintError(f"{label}: {where} must be a table")
        _check_keys(raw, ENTRY_KEYS, label, where)
        if not isinstance(raw.get("path"), str):
            raise ArchlintError(f"{label}: {where} needs path = \"<file or glob>\"")
        entries.append(ModelEntry(raw["path"], _setting_values(raw, label, where),
                                  _rule_options(raw.get("rules", {}), label, where)))
    timeout = None
    if "timeout" in table:
        try:
            timeout = parse_timeout(table["timeout"])
        except ArchlintError as exc:
            raise ArchlintError(f"{label}: [tool.archlint] timeout = {_toml(table['timeout'])}: "
                                f"{exc}") from None
    cache = table.get("cache", True)
    if not isinstance(cache, bool):
        raise ArchlintError(f"{label}: [tool.archlint] cache = {_toml(cache)}: use true or "
                            "false")
    return ProjectConfig(path=path, values=values, timeout=timeout, cache=cache,
                         rule_options=_rule_options(table.get("rules", {}), label,
                                                    "[tool.archlint]"),
                         models=tuple(models), entries=tuple(entries))


def _normal(key: str) -> str:
    return key.replace("-", "_")


def _check_keys(table: dict[str, Any], known: Iterable[str], label: str, where: str) -> None:
    known = sorted(known)
    for key in table:
        if _normal(key) not in known:
            close = difflib.get_close_matches(_normal(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            raise ArchlintError(f"{label}: {where} has unknown key {key!r}; {hint}")


def _setting_values(table: dict[str, Any], label: str, where: str) -> dict[str, Any]:
    """The setting keys of ``table`` as make_settings arguments, each value checked."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = _normal(key)
        if name not in SETTING_KEYS:
            continue
        field_name = SETTING_KEYS[name]
        try:
            make_settings(**{field_name: value})
        except ArchlintError as exc:
            raise ArchlintError(f"{label}: {where} {key} = {_toml(value)}: {exc}") from None
        values[field_name] = value
    return values


def _rule_options(table: Any, label: str, where: str) -> dict[str, dict[str, Any]]:
    """``[tool.archlint.rules.<CODE>]`` tables, checked against each rule's options."""
    if not isinstance(table, dict):
        raise ArchlintError(f"{label}: {where} rules must be a table of [rules.<CODE>] tables")
    parsed: dict[str, dict[str, Any]] = {}
    for code, options in table.items():
        rule = info_by_code(code)
        if rule is None:
            raise ArchlintError(f"{label}: {where} rules.{code}: unknown rule code; "
                                "see `archlint rules`")
        if not isinstance(options, dict):
            raise ArchlintError(f"{label}: {where} rules.{code} must be a table of options")
        known = {"severity": rule.severity, **rule.options}
        checked: dict[str, Any] = {}
        for key, value in options.items():
            name = _normal(key)
            if name not in known:
                raise ArchlintError(
                    f"{label}: {where} rules.{code} has unknown option {key!r}; "
                    f"{rule.code} takes {', '.join(sorted(known))}")
            checked[name] = _option_value(value, known[name], name,
                                          f"{label}: {where} rules.{code}.{key}")
        parsed[rule.code] = checked
    return parsed


def _option_value(value: Any, default: Any, name: str, where: str) -> Any:
    if name == "severity":
        if not isinstance(value, str) or value.lower() not in SEVERITIES:
            raise ArchlintError(f"{where} = {_toml(value)}: use one of {', '.join(SEVERITIES)}")
        return value.lower()
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)                    # 1 for a 0.5 default: a number all the same
    if default is not None and type(value) is not type(default):
        raise ArchlintError(f"{where} = {_toml(value)}: expected a {type(default).__name__} "
                            f"like the default {_toml(default)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArchlintError(f"{where} = {_toml(value)}: expected a finite number")
    return value


def _merge_rules(base: dict[str, dict[str, Any]],
                 extra: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged = {code: dict(options) for code, options in base.items()}
    for code, options in extra.items():
        merged.setdefault(code.upper(), {}).update(options)
    return merged


@lru_cache(maxsize=64)
def _cached_toml(path: Path, mtime_ns: int) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ArchlintError(f"{_display(path)}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ArchlintError(f"{_display(path)}: invalid TOML: not UTF-8 text (byte "
                            f"{exc.start}); save the file as UTF-8") from None
    except RecursionError:
        raise ArchlintError(f"{_display(path)}: invalid TOML: nested too deeply to "
                            "read") from None
    except OSError as exc:
        raise ArchlintError(f"{_display(path)}: cannot read it ({exc.strerror}); fix its "
                            "permissions or pass --isolated") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise ArchlintError(f"{_display(path)}: cannot read it ({exc.strerror}); fix its "
                            "permissions or pass --isolated") from None
    return _cached_toml(path, stamp)


def _archlint_table(path: Path) -> Any:
    """The ``tool.archlint`` value of a pyproject (None: no such table). A ``tool`` that is
    not a table cannot hold archlint's and is passed over, as other tools' files are."""
    tool = _read_toml(path).get("tool")
    return tool.get("archlint") if isinstance(tool, dict) else None


def parse_timeout(value: Any) -> float:
    """Seconds, ``> 0`` and finite: ``300``, ``"90s"``, ``"5min"``."""
    if isinstance(value, str):
        text = value.strip().lower()
        for unit, scale in (("min", 60.0), ("ms", 1e-3), ("s", 1.0)):
            if text.endswith(unit) and text[: -len(unit)].strip():
                return _seconds(text[: -len(unit)], value) * scale
        return _seconds(text, value)
    return _seconds(value, value)


def _seconds(number: Any, shown: Any) -> float:
    if isinstance(number, bool) or not isinstance(number, (int, float, str)) or (
            isinstance(number, str) and len(number) > 30):
        raise ArchlintError(f"timeout {shown!r} is not a duration: use seconds (300, 90s, 5min)")
    try:
        seconds = float(number)
    except (ValueError, OverflowError):
        raise ArchlintError(f"timeout {shown!r} is not a duration: use seconds "
                            "(300, 90s, 5min)") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ArchlintError(f"timeout {shown!r} must be a positive, finite number of seconds")
    return seconds


def _split_attr(target: str) -> tuple[str, str | None]:
    head, sep, attr = target.rpartition(":")
    if not sep or not attr or os.sep in attr or "/" in attr:
        return target, None
    return head, attr


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or os.sep in text or "*" in text


def _display(path: Path) -> str:
    absolute = os.path.abspath(path)
    cwd = os.getcwd() + os.sep
    return absolute[len(cwd):] if absolute.startswith(cwd) else absolute


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()
