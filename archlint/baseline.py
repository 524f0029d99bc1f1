"""Baselines: a small stored summary of each report, and what moved since it was written.

``archlint check --write-baseline FILE`` stores, per model and target length, the peak
memory and FLOPs at every length checked, the receptive field R, the dependency path
L(span), the serial steps S(n) and the findings (code and layer). ``--baseline FILE``
(or ``baseline = "FILE"`` in ``[tool.archlint]``, which the pre-commit hook reads)
compares a new report with that entry:

- a finding whose (code, layer) the baseline does not have: AL501 new-finding;
- peak memory or FLOPs up by more than ``baseline_tolerance`` (default 2%): AL502;
- R, L(span) or S(n) changed: AL503;

each a regression finding (rules in ``archlint/rules/baseline_*.py``). Findings that
went away, and peak or FLOPs down by more than the tolerance, are listed as
improvements. The file is JSON with sorted keys: the same reports write the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlint.errors import ArchlintError
from archlint.units import format_bytes, format_count

#: version of the file layout (bump when a key is removed or renamed)
BASELINE_VERSION = 1
#: the rules that report regressions (archlint/rules/baseline_*.py)
RULE_CODES = ("AL501", "AL502", "AL503")


def summary(report) -> dict[str, Any]:
    """The baseline entry of one report: what later reports are compared with."""
    settings = report.settings
    entry: dict[str, Any] = {
        "step": {"mode": settings.mode, "dtype": settings.dtype, "batch": settings.batch,
                 "optimizer": settings.optimizer},
        "lengths": {},
        "receptive_field": None, "dependency_path": None, "serial_steps": None,
        "findings": sorted(({"code": f.code, "layer": f.layer or "", "message": f.message}
                            for f in report.findings if f.code not in RULE_CODES),
                           key=lambda f: (f["code"], f["layer"], f["message"])),
    }
    cost = report.cost
    if cost is not None:
        entry["lengths"] = {str(p.seq_len): {"peak_bytes": p.peak, "flops": p.flops}
                            for p in cost.predictions}
    reach = report.reach
    if reach is not None:
        entry["receptive_field"] = str(reach.receptive_field.size)
        entry["serial_steps"] = str(reach.serial_steps)
        if reach.span:
            entry["dependency_path"] = {"span": reach.span,
                                        "hops": _number(reach.dependency_path)}
    return entry


def model_key(report) -> tuple[str, str]:
    """Where a report's entry lives: the model's name (its file relative to the working
    directory, however the target was spelled) and its target length."""
    name, file = report.model.name, report.model.file
    if file and name.startswith(file):
        relative = os.path.relpath(os.path.abspath(file))
        if not relative.startswith(".."):
            name = Path(relative).as_posix() + name[len(file):]
    return name, str(report.settings.target_len)


def write_baseline(path: str, reports: list, keys: list[tuple[str, str]] | None = None) -> None:
    """Write the entries of ``reports`` (under ``keys``, default :func:`model_key`)."""
    models: dict[str, dict[str, Any]] = {}
    for report, (name, length) in zip(reports, keys or [model_key(r) for r in reports]):
        models.setdefault(name, {})[length] = summary(report)
    document = {"archlint_baseline": BASELINE_VERSION, "models": models}
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
    except OSError as exc:
        raise ArchlintError(f"{path}: cannot write the baseline ({exc.strerror}); "
                            "pass a writable --write-baseline path") from exc


_LOADED: dict[tuple[str, float], dict[str, Any]] = {}


def load_baseline(path: str) -> dict[str, Any]:
    """The ``models`` table of a baseline file; one-line errors for a missing or bad file."""
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        raise ArchlintError(f"{path}: no such baseline file; write one with "
                            f"`archlint check --write-baseline {path}`") from None
    key = (os.path.abspath(path), stamp)
    if key not in _LOADED:
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArchlintError(f"{path}: not a baseline file ({_reason(exc)}); write it "
                                f"again with `archlint check --write-baseline {path}`") from None
        if (not isinstance(document, dict)
                or document.get("archlint_baseline") != BASELINE_VERSION
                or not isinstance(document.get("models"), dict)
                or not all(isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())
                           for v in document["models"].values())):
            raise ArchlintError(f"{path}: not an archlint baseline (version "
                                f"{BASELINE_VERSION}); write it again with "
                                f"`archlint check --write-baseline {path}`")
        _LOADED[key] = document["models"]
    return _LOADED[key]


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON at line {exc.lineno}"
    return type(exc).__name__


@dataclass(frozen=True)
class Move:
    """One quantity that differs from the baseline."""

    kind: str                    # finding | peak_bytes | flops | receptive_field | ...
    regression: bool
    text: str                    # "peak memory at n=4096: 2.0 GB -> 4.0 GB (+100%)"
    code: str = ""               # the finding's code (kind "finding")
    layer: str = ""              # the finding's layer (kind "finding")
    finding: Any = None          # the new finding itself (a regression of kind "finding")


@dataclass
class BaselineDiff:
    """What moved between the stored entry of a model and its report now."""

    path: str
    model: str
    length: str
    found: bool                                  # the baseline has an entry for the model
    moves: list[Move] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Move]:
        return [m for m in self.moves if m.regression]

    def regressions_of(self, *kinds: str) -> list[Move]:
        """The regressions of the given kinds: what one baseline rule reports."""
        return [m for m in self.regressions if m.kind in kinds]

    @property
    def improvements(self) -> list[Move]:
        return [m for m in self.moves if not m.regression]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "model": self.model, "seq_len": int(self.length),
                "found": self.found,
                "regressions": [_move_dict(m) for m in self.regressions],
                "improvements": [_move_dict(m) for m in self.improvements],
                "notes": list(self.notes)}

    def render_text(self) -> str:
        lines = [f"Baseline ({self.path}, n={self.length})"]
        if not self.found:
            lines.append("  not in the baseline: nothing to compare (write it again to add "
                         "this model)")
        elif not self.moves:
            lines.append("  nothing moved: peak, FLOPs, R, L, S and findings as stored")
        for move in self.regressions:
            lines.append(f"  regression: {move.text}")
        for move in self.improvements:
            lines.append(f"  improved: {move.text}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _move_dict(move: Move) -> dict[str, Any]:
    out = {"kind": move.kind, "text": move.text}
    if move.kind == "finding":
        out.update(code=move.code, layer=move.layer or None)
    return out


def compare(report, path: str, tolerance: float, key: tuple[str, str] | None = None,
            models: dict[str, Any] | None = None) -> BaselineDiff:
    """The diff of ``report`` against its entry in the baseline file ``path``."""
    name, length = key or model_key(report)
    models = load_baseline(path) if models is None else models
    stored = models.get(name, {}).get(length)
    diff = BaselineDiff(path=path, model=name, length=length, found=stored is not None)
    if stored is None:
        return diff
    now = summary(report)
    diff.moves += _finding_moves(stored.get("findings", []), report.findings)
    if stored.get("step") != now["step"]:
        diff.notes.append(f"the baseline was written for {_step(stored.get('step'))}, this "
                          f"run is {_step(now['step'])}: peak and FLOPs not compared")
    else:
        diff.moves += _cost_moves(stored.get("lengths", {}), now["lengths"], tolerance)
        lost = sorted(set(stored.get("lengths", {})) - set(now["lengths"]), key=int)
        if lost and report.cost is not None:
            diff.notes += [f"n={n}: in the baseline but not predicted now: "
                           f"{report.cost.failures.get(int(n), 'not asked for')}" for n in lost]
    diff.moves += _reach_moves(stored, now)
    return diff


def _finding_moves(stored: list[dict[str, Any]], findings: list) -> list[Move]:
    before = Counter((f.get("code", ""), f.get("layer", "")) for f in stored)
    moves = []
    seen: Counter = Counter()
    for finding in sorted(findings, key=lambda f: f.sort_key()):
        if finding.code in RULE_CODES:
            continue
        ident = (finding.code, finding.layer or "")
        seen[ident] += 1
        if seen[ident] > before[ident]:
            moves.append(Move("finding", True, f"new {finding.code} {finding.rule}: "
                              f"{finding.message}", code=finding.code,
                              layer=finding.layer or "", finding=finding))
    for code, layer in sorted(before - seen):
        gone = next(f for f in stored if (f.get("code"), f.get("layer", "")) == (code, layer))
        moves.append(Move("finding", False, f"{code} gone"
                          + (f" ({layer})" if layer else "") + f": {gone.get('message', '')}",
                          code=code, layer=layer))
    return moves


_COST_LABELS = {"peak_bytes": ("peak memory", format_bytes), "flops": ("FLOPs", format_count)}


def _cost_moves(stored: dict[str, Any], now: dict[str, Any], tolerance: float) -> list[Move]:
    moves = []
    for length in sorted(set(stored) & set(now), key=int):
        for quantity, (label, show) in _COST_LABELS.items():
            old, new = stored[length].get(quantity), now[length][quantity]
            if not isinstance(old, (int, float)) or old <= 0:
                continue
            change = new / old - 1
            if abs(change) > tolerance:
                moves.append(Move(quantity, change > 0,
                                  f"{label} at n={length}: {show(old)} -> {show(new)} "
                                  f"({change:+.1%}, tolerance {tolerance:.0%})"))
    return moves


_REACH_LABELS = {"receptive_field": "receptive field R", "serial_steps": "serial steps S(n)"}


def _reach_moves(stored: dict[str, Any], now: dict[str, Any]) -> list[Move]:
    moves = [Move(key, True, f"{label}: {stored[key]} -> {now[key]}")
             for key, label in _REACH_LABELS.items() if stored.get(key) != now[key]]
    old, new = stored.get("dependency_path"), now["dependency_path"]
    if old and new and old.get("span") == new["span"] and old.get("hops") != new["hops"]:
        moves.append(Move("dependency_path", True,
                          f"dependency path L({new['span'] - 1}): {old.get('hops')} -> "
                          f"{new['hops']} hops"))
    return moves


def _step(step: Any) -> str:
    if not isinstance(step, dict):
        return "an unknown step"
    return (f"{step.get('mode')} {step.get('dtype')} batch {step.get('batch')}"
            + (f" {step.get('optimizer')}" if step.get("mode") == "train" else ""))


def _number(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return int(value) if float(value).is_integer() else round(float(value), 6)
