"""Resolved settings of one run: what the user asked archlint to check.

One object, built by :mod:`archlint.config` from ``[tool.archlint]`` and overridden by
CLI flags or API keyword arguments. Every stage reads settings from here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

#: Default target length when neither the command line nor the config names one.
DEFAULT_SEQ_LEN = 2048
#: Default length at which dynamic probes run on real tensors.
DEFAULT_PROBE_LEN = 64

SEVERITIES = ("info", "warning", "error")
DTYPES = ("float32", "bfloat16", "float16")
MODES = ("train", "infer", "decode")
OPTIMIZERS = ("adam", "adamw", "sgd", "none")


@dataclass(frozen=True)
class Settings:
    """Everything a check depends on. Sizes in bytes, lengths in positions."""

    seq_len: tuple[int, ...] = (DEFAULT_SEQ_LEN,)
    span: int | None = None               # dependency distance the model must cover
    memory: int | None = None             # budget in bytes
    device: str | None = None             # device name the budget came from, if any
    batch: int = 1
    dtype: str = "float32"
    mode: str = "train"
    optimizer: str = "adam"
    latency_ms: float | None = None
    max_serial_steps: int | None = None
    causal: bool | None = None            # None: infer from the model
    probe_len: int = DEFAULT_PROBE_LEN
    select: tuple[str, ...] = ()          # rule code prefixes to enable (empty = all)
    ignore: tuple[str, ...] = ()          # rule code prefixes to disable
    fail_on: str = "warning"              # lowest severity that makes exit code 1
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    dynamic: bool = True                  # run the gradient probes
    warn_unused_noqa: bool = False        # report ``# archlint: noqa`` that suppress nothing
    parallel: str | None = None           # layout, canonical "dp=4,fsdp=8,tp=2,cp=2"
    checkpoint: str = "none"              # activation checkpointing per block
    zero: int | None = None               # ZeRO stage of the data-parallel sharding
    offload: bool = False                 # sharded state in host memory (CPU offload)
    baseline: str | None = None           # baseline file to compare with (archlint.baseline)
    baseline_tolerance: float = 0.02      # relative rise of peak/FLOPs that is a regression

    @property
    def target_len(self) -> int:
        """The longest length asked for: the one findings speak about."""
        return max(self.seq_len)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def rule_option(self, code: str, key: str, default: Any) -> Any:
        return self.rule_options.get(code, {}).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            out[item.name] = list(value) if isinstance(value, tuple) else value
        return out


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes", "on"):
        return True
    if str(value).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true/false")


def _codes(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(sorted({str(item).strip().upper() for item in items if str(item).strip()}))


def _choice(options: tuple[str, ...]):
    def check(value: Any) -> str:
        if str(value).lower() not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return str(value).lower()
    return check


def _positive_int(value: Any) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"{value!r} must be a positive integer")
    return number


def _positive_float(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"{value!r} must be positive")
    return number


def _path(value: Any) -> str | None:
    """A file path; the empty string turns a configured one off."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a file path")
    return value.strip() or None


def _fraction(value: Any) -> float:
    """A tolerance: 0.02 or ``2%``, at least 0 and below 10 (1000%)."""
    text = str(value).strip()
    number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= number < 10:
        raise ValueError(f"{value!r} must be a fraction such as 0.02 or 2%")
    return number


_DURATION = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _milliseconds(value: Any) -> float:
    """A latency: a number of milliseconds, or text with a unit (``50ms``, ``0.2s``, ``800us``)."""
    if isinstance(value, str):
        text = value.strip().lower()
        for unit in sorted(_DURATION, key=len, reverse=True):
            if text.endswith(unit) and text[: -len(unit)].strip():
                return _positive_float(text[: -len(unit)]) * _DURATION[unit]
    return _positive_float(value)


def make_settings(base: Settings | None = None, **raw: Any) -> Settings:
    """Settings from user-typed values (``seq_len="8k"``, ``memory="16GB"``); None = keep.

    Raises :class:`~archlint.errors.ArchlintError` naming the key for a bad value.
    """
    from archlint.errors import ArchlintError
    from archlint.units import parse_length, parse_lengths

    parsers = {
        "seq_len": lambda v: tuple(parse_lengths(v)),
        "span": parse_length,
        "batch": _positive_int,
        "dtype": _choice(DTYPES),
        "mode": _choice(MODES),
        "optimizer": _choice(OPTIMIZERS),
        "latency_ms": _milliseconds,
        "max_serial_steps": _positive_int,
        "causal": _flag,
        "probe_len": parse_length,
        "select": _codes,
        "ignore": _codes,
        "fail_on": _choice(SEVERITIES),
        "dynamic": _flag,
        "warn_unused_noqa": _flag,
        "rule_options": dict,
        **_parallel_parsers(),
        "baseline": _path,
        "baseline_tolerance": _fraction,
    }
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key == "memory":
            changes.update(_memory(value))
            continue
        if key not in parsers:
            raise ArchlintError(f"unknown setting {key!r}")
        try:
            changes[key] = parsers[key](value)
        except ArchlintError:
            raise
        except (TypeError, ValueError) as exc:
            raise ArchlintError(f"setting {key}: {exc}") from exc
    return (base or Settings()).with_(**changes)


def _parallel_parsers() -> dict[str, Any]:
    """Parsers of the layout settings (``archlint.parallel.layout`` owns their syntax)."""
    from archlint.parallel.layout import CHECKPOINTS, parse_degrees, parse_zero

    return {"parallel": parse_degrees, "checkpoint": _choice(CHECKPOINTS),
            "zero": parse_zero, "offload": _flag}


def _memory(value: Any) -> dict[str, Any]:
    """``16GB`` -> bytes; a device name -> its usable capacity."""
    from archlint.errors import ArchlintError
    from archlint.units import parse_size

    try:
        return {"memory": parse_size(value), "device": None}
    except ArchlintError as size_error:
        try:
            from archlint.cost.devices import device_memory
        except ImportError:
            raise size_error from None
        capacity = device_memory(str(value))
        if capacity is None:
            raise
        return {"memory": capacity, "device": str(value).lower()}
