"""Checking many model files in one process: config per file, shared work, suppressions.

``archlint check a.py b.py ...`` and the pre-commit hook (every model file of the
repository) go through :class:`CheckSession`. Work is reused where the answer cannot
differ:

- torch and archlint are imported once, and torch.export's one-off start-up cost is paid
  once, for every file;
- a target listed twice (overlapping globs) is analyzed once;
- two files that build the same model from byte-identical source (a copied model file,
  the same factory under two names) are traced and analyzed once: the second report is
  the first with its file paths rewritten (:func:`model_fingerprint` decides "same").

Each file still gets its own report, its own settings (per-model config) and its own
``# archlint: noqa`` comments.
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from archlint.config import ProjectConfig, config_for
from archlint.findings import Finding
from archlint.graph import SourceLocation
from archlint.load import LoadedModel
from archlint.load.source import display_path, is_user_frame
from archlint.report import Report
from archlint.settings import Settings
from archlint.suppress import apply_suppressions


@dataclass
class CheckSession:
    """One run over many targets; counts what it reused (for ``benchmarks/``)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    config_path: str | None = None
    isolated: bool = False
    analyzed: int = 0
    reused: int = 0
    _reports: dict[str, tuple[Report, list[Finding], list[tuple[str, str]]]] = field(
        default_factory=dict)

    def config(self, target: str | None) -> ProjectConfig:
        return config_for(target, self.config_path, self.isolated)

    def settings(self, target: str) -> Settings:
        return self.config(target).settings_for(target, self.overrides)

    def check(self, targets: list[str]) -> list[Report]:
        """One report per distinct target, in order."""
        unique = list(dict.fromkeys(targets))
        return [self.analyze(target) for target in unique]

    def analyze(self, target: str) -> Report:
        from archlint.api import analyze_loaded
        from archlint.load import load_target

        settings = self.settings(target)
        loaded = load_target(target, values_needed=settings.dynamic)
        key, files = model_fingerprint(loaded)
        cache_key = key + "|" + json.dumps(settings.to_dict(), sort_keys=True, default=str)
        if cache_key in self._reports:
            first, raw_findings, first_files = self._reports[cache_key]
            paths = dict(zip((f for _, f in first_files), (f for _, f in files)))
            report = relocated(first, raw_findings, loaded, paths)
            self.reused += 1
        else:
            report = analyze_loaded(loaded, settings)
            self._reports[cache_key] = (report, list(report.findings), files)
            self.analyzed += 1
        apply_suppressions(report, settings)
        return report


def model_fingerprint(loaded: LoadedModel) -> tuple[str, list[tuple[str, str]]]:
    """A digest that is equal for two models whose analysis must be equal.

    It covers the module tree (types, their ``extra_repr``, training flags), every
    parameter and buffer (name, shape, dtype), the inferred input, and the bytes of the
    user source files the model came from (the model file and the files defining its
    module classes) — but not their paths. Returns the digest and the ``(sha, path)`` of
    each user file, in a fixed order, so one report's paths can be mapped onto another's.
    """
    digest = hashlib.sha256()
    files: list[tuple[str, str]] = []

    def add_file(path: str | None) -> None:
        if not path or not is_user_frame(path):
            return
        shown = display_path(path)
        if shown not in (f for _, f in files):
            try:
                with open(path, "rb") as handle:
                    sha = hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                sha = "unreadable"
            files.append((sha, shown))
            digest.update(sha.encode())

    add_file(loaded.file)
    for path, module in loaded.module.named_modules(remove_duplicate=False):
        cls = type(module)
        source = _source_file(cls)
        add_file(source)
        # a user class is identified by its file's bytes (hashed above), a library one by name
        origin = "" if source and is_user_frame(source) else cls.__module__
        digest.update(f"{path}|{origin}.{cls.__qualname__}|{module.extra_repr()}|"
                      f"{module.training}\n".encode())
    for name, tensor in (*loaded.module.named_parameters(), *loaded.module.named_buffers()):
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|"
                      f"{getattr(tensor, 'requires_grad', False)}\n".encode())
    spec = loaded.input_spec
    digest.update(f"{spec.kind}|{spec.description}|{spec.seq_dims}|{spec.min_len}|"
                  f"{sorted(spec.kwargs)}".encode())
    return digest.hexdigest(), files


def _source_file(cls: type) -> str | None:
    try:
        return inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None


def relocated(report: Report, findings: list[Finding], loaded: LoadedModel,
              paths: dict[str, str]) -> Report:
    """A copy of ``report`` (with its unsuppressed ``findings``) for an identical model
    loaded from other files: every :class:`SourceLocation` in it — layers, findings, and
    the analysis sections' own rows — moved through ``paths``."""
    def move(location: SourceLocation) -> SourceLocation:
        if location.file not in paths:
            return location
        return SourceLocation(paths[location.file], location.line)

    source = dataclasses.replace(report, findings=findings)
    copy = _with_locations(source, move, {})
    graph = dataclasses.replace(copy.graph, module=loaded.module)
    model = dataclasses.replace(copy.model, name=loaded.name, file=loaded.file)
    return dataclasses.replace(copy, model=model, graph=graph)


def _with_locations(value: Any, move, memo: dict[int, Any]) -> Any:
    """``value`` with every SourceLocation inside dataclasses, lists, tuples and dicts
    replaced by ``move(location)``; unchanged parts are shared, not copied."""
    key = id(value)
    if key in memo:
        return memo[key]
    memo[key] = value                                   # cycles resolve to the original
    result = value
    if isinstance(value, SourceLocation):
        result = move(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for item in dataclasses.fields(value):
            old = getattr(value, item.name, None)
            new = _with_locations(old, move, memo)
            if new is not old:
                changes[item.name] = new
        if changes:
            result = copy_module.copy(value)
            for name, new in changes.items():
                object.__setattr__(result, name, new)
    elif isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        items = [_with_locations(item, move, memo) for item in value]
        if any(new is not old for new, old in zip(items, value)):
            result = type(value)(items)
    elif isinstance(value, dict) and type(value) is dict:
        items = {k: _with_locations(v, move, memo) for k, v in value.items()}
        if any(items[k] is not value[k] for k in value):
            result = items
    memo[key] = result
    return result
