"""Resolved settings of one run: what the user asked archlint to check.

One object, built by :mod:`archlint.config` from ``[tool.archlint]`` and overridden by
CLI flags or API keyword arguments. Every stage reads settings from here only.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import types
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from archlint.units import MAX_DIGITS

#: Default target length when neither the command line nor the config names one.
DEFAULT_SEQ_LEN = 2048
#: Default length at which dynamic probes run on real tensors.
DEFAULT_PROBE_LEN = 64
#: Longest probe length accepted: probes allocate real tensors at this length.
MAX_PROBE_LEN = 4096

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
    device: str | None = None             # GPU predicted for (devices.py); None: this CPU
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
    #: tokens per expert of a mixture of experts, times the balanced share (Switch
    #: Transformer's capacity factor; archlint.cost.routing)
    capacity_factor: float = 1.0
    #: bytes of the CUDA context on ``device`` as the user measured it (None: the
    #: family's documented constant, archlint.cost.devices)
    cuda_context: int | None = None

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
    """Rule codes or prefixes (``AL1``, ``AL201``); one no rule has is an error, since a
    typo would otherwise switch rules off (``select``) or be ignored silently."""
    from archlint.ruleinfo import unknown_codes

    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        items = list(value)
    else:
        raise ValueError(f"{value!r} is not a list of rule codes (e.g. [\"AL1\", \"AL201\"])")
    codes = tuple(sorted({item.strip().upper() for item in items if item.strip()}))
    unknown = unknown_codes(codes)
    if unknown:
        raise ValueError(f"unknown rule code {unknown[0]!r}; see `archlint rules` for the codes")
    return codes


def _choice(options: tuple[str, ...]):
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value.lower()
    return check


def _positive_int(value: Any) -> int:
    """A whole number > 0: ``8``, ``"8"``, ``8.0``; never ``true``, ``1.5`` or ``nan``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        value = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text.isdigit() or len(text) > MAX_DIGITS:
            raise ValueError(f"{value!r} is not a positive integer")
        value = int(text)
    elif not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    if value <= 0:
        raise ValueError(f"{value!r} must be a positive integer")
    return value


def _positive_float(value: Any) -> float:
    """A finite number > 0 (``nan`` and ``inf`` are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, str) and len(value.strip()) > MAX_DIGITS:
        raise ValueError(f"{value[:20]!r}... has more than {MAX_DIGITS} characters")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{value!r} is too large") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if number <= 0:
        raise ValueError(f"{value!r} must be positive")
    return number


def _probe_len(value: Any) -> int:
    from archlint.units import parse_length

    length = parse_length(value)
    if length > MAX_PROBE_LEN:
        raise ValueError(f"{value!r} exceeds {MAX_PROBE_LEN}: probes run on real tensors, "
                         "keep probe_len short (the default is "
                         f"{DEFAULT_PROBE_LEN})")
    return length


def _rule_options(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("rule_options must map rule codes to option tables")
    return dict(value)


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


def _capacity_factor(value: Any) -> float:
    """A capacity factor: at least 1 (an expert takes at least its balanced share)."""
    number = _positive_float(value)
    if number < 1:
        raise ValueError(f"{value!r} must be at least 1 (1.25 gives each expert a "
                         "quarter more than its balanced share of tokens)")
    return number


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
        "probe_len": _probe_len,
        "select": _codes,
        "ignore": _codes,
        "fail_on": _choice(SEVERITIES),
        "dynamic": _flag,
        "warn_unused_noqa": _flag,
        "rule_options": _rule_options,
        **_parallel_parsers(),
        "baseline": _path,
        "baseline_tolerance": _fraction,
        "capacity_factor": _capacity_factor,
        "cuda_context": _size,
    }
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key == "memory":
            changes.update(_memory(value))
            continue
        if key == "device":
            changes.update(_device(value, base or Settings(), "memory" in raw))
            continue
        if key not in parsers:
            raise ArchlintError(f"unknown setting {key!r}")
        try:
            changes[key] = parsers[key](value)
        except ArchlintError:
            raise
        except (TypeError, ValueError) as exc:
            raise ArchlintError(f"setting {key}: {exc}") from exc
    return _context_applied(base or Settings(), (base or Settings()).with_(**changes))


def _size(value: Any) -> int:
    from archlint.errors import ArchlintError
    from archlint.units import parse_size

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r} is not a size such as 500MB")
    try:
        return parse_size(value)
    except ArchlintError:
        raise ValueError(f"{value!r} is not a size such as 500MB") from None


def _context_applied(base: Settings, settings: Settings) -> Settings:
    """A budget that follows the device follows its CUDA context too: with
    ``cuda_context`` set, the device's usable memory is what the context leaves."""
    if settings.device is None or settings.memory is None:
        return settings
    devices = _plain_module("archlint.cost.devices", "cost/devices.py")
    followed = {devices.find_device(settings.device).usable,
                devices.find_device(settings.device, base.cuda_context).usable}
    if settings.memory in followed:
        return settings.with_(memory=devices.find_device(settings.device,
                                                         settings.cuda_context).usable)
    return settings


def _parallel_parsers() -> dict[str, Any]:
    """Parsers of the layout settings (``archlint.parallel.layout`` owns their syntax)."""
    layout = _plain_module("archlint.parallel.layout", "parallel/layout.py")
    return {"parallel": layout.parse_degrees, "checkpoint": layout.parse_checkpoint,
            "zero": layout.parse_zero, "offload": _flag}


def _memory(value: Any) -> dict[str, Any]:
    """``16GB`` -> bytes; a device name -> its usable capacity."""
    from archlint.errors import ArchlintError
    from archlint.units import parse_size

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ArchlintError(f"setting memory: {value!r} is not a size (16GB) or a device name")
    if isinstance(value, int) or re.match(r"^\s*[-+.\d]", value):
        return {"memory": parse_size(value)}          # a size: the device stays what it was
    capacity = _plain_module("archlint.cost.devices", "cost/devices.py").device_memory(value)
    if capacity is None:
        return {"memory": parse_size(value)}
    return {"memory": capacity, "device": value.strip().lower()}   # a GPU's name: that GPU


def _device(value: Any, base: Settings, memory_given: bool) -> dict[str, Any]:
    """``--device NAME``: the kernels and allocator predicted for. Without a memory budget
    of its own (or with one that came from another device's name), the budget becomes
    the device's usable memory."""
    devices = _plain_module("archlint.cost.devices", "cost/devices.py")
    name = devices.canonical_device(value)
    gpu = devices.find_device(name)
    changes: dict[str, Any] = {"device": None if gpu is None else name}
    budget_from_device = base.memory is None or (
        base.device is not None and base.memory in (
            devices.find_device(base.device).usable,
            devices.find_device(base.device, base.cuda_context).usable))
    if not memory_given and budget_from_device:
        changes["memory"] = None if gpu is None else gpu.usable
    return changes


def _plain_module(name: str, path: str) -> types.ModuleType:
    """A module of plain data and parsers (the device table, the layout syntax), loaded
    without running its package's ``__init__.py``, which imports torch: a flag naming an
    unknown device or a bad layout must be refused before torch is imported. It is kept
    under a private name (the package imports its own copy when it loads); what the
    parsers return is plain data (ints, strings), the same from either copy."""
    if name in sys.modules:
        return sys.modules[name]
    private = "archlint._plain." + name
    if private not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            private, Path(__file__).resolve().parent / path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module
        spec.loader.exec_module(module)
    return sys.modules[private]
