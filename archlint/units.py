"""Parsing of the quantities users type: sequence lengths and memory sizes.

Lengths use binary multipliers, as sequence lengths are conventionally written
(``8k`` = 8192, ``128k`` = 131072, ``1M`` = 1048576). Sizes follow the units they name:
``GB``/``MB`` are decimal (10^9, 10^6), ``GiB``/``MiB`` binary (2^30, 2^20).
"""

from __future__ import annotations

import re
from decimal import Decimal

from archlint.errors import ArchlintError

#: Longest sequence archlint reasons about; beyond it int64 element counts overflow.
MAX_SEQ_LEN = 2**40

#: digits a number may have before archlint refuses to read it (2^40 has 13)
MAX_DIGITS = 30

_LENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$")
_LENGTH_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_length(text: str | int) -> int:
    """``"4096"``, ``"8k"``, ``"128k"``, ``"1M"`` -> positions; rejects <= 0 and absurd values.

    The value is computed exactly (``0.5k`` = 512); one that is not a whole number of
    positions (``1.5``, ``1.0001k``) is refused rather than rounded.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _LENGTH.match(str(text))
        if not match:
            raise ArchlintError(
                f"sequence length {_shown(text)} is not a length: use an integer or a suffix "
                "k/M (e.g. 4096, 8k, 128k, 1M)"
            )
        number, unit = match.groups()
        exact = _decimal(number, text, "sequence length") * _LENGTH_UNITS[unit.lower()]
        if exact != exact.to_integral_value():
            raise ArchlintError(
                f"sequence length {_shown(text)} is not a whole number of positions; "
                "use an integer (e.g. 4096 or 0.5k = 512)")
        value = int(exact)
    if value <= 0:
        raise ArchlintError(f"sequence length {_shown(text)} must be positive")
    if value > MAX_SEQ_LEN:
        raise ArchlintError(
            f"sequence length {_shown(text)} exceeds {MAX_SEQ_LEN} (2^40): tensor sizes at "
            "that length overflow int64; use a smaller --seq-len"
        )
    return value


def _decimal(number: str, text: object, what: str) -> Decimal:
    """The digits as an exact decimal; hundreds of digits are refused, not computed with."""
    if len(number) > MAX_DIGITS:
        raise ArchlintError(f"{what} {_shown(text)} has more than {MAX_DIGITS} digits; "
                            "use a realistic value")
    return Decimal(number)


def _shown(text: object) -> str:
    """The user's value in a message, shortened when it is very long."""
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def parse_lengths(text: str | int | list) -> list[int]:
    """A comma-separated list or a list of lengths, sorted and de-duplicated."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    elif isinstance(text, int):
        items = [text]
    else:
        items = [part for part in str(text).split(",") if part.strip()]
    if not items:
        raise ArchlintError("no sequence length given: use e.g. --seq-len 4096 or 1k,4k,16k")
    return sorted({parse_length(item) for item in items})


def parse_size(text: str | int) -> int:
    """``"16GB"``, ``"80 GiB"``, ``"512MB"`` -> bytes (a fraction of a byte is dropped)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ArchlintError(f"memory size {text} must be positive")
        return text
    match = _SIZE.match(str(text))
    if not match:
        negative = re.match(r"^\s*-\s*\d", str(text))
        raise ArchlintError(
            f"memory size {_shown(text)} must be positive" if negative else
            f"memory size {_shown(text)} is not a size: use a number with B, MB, GB, TB, "
            "MiB, GiB or TiB (e.g. 16GB, 80GiB, 512MB), or a device name"
        )
    number, unit = match.groups()
    value = int(_decimal(number, text, "memory size") * _SIZE_UNITS[unit.lower()])
    if value <= 0:
        raise ArchlintError(f"memory size {_shown(text)} must be positive")
    return value


def format_bytes(count: float) -> str:
    """Bytes in the decimal unit a user would write on the command line (``34.2 GB``)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(count) >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def format_count(count: float) -> str:
    """Large counts with an SI suffix (``1.2 G``, ``340.5 M``), exact below 1000."""
    for unit, scale in (("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(count) >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(int(count))
