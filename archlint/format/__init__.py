"""Stage 5: findings + report -> bytes. Every formatter is deterministic."""

from __future__ import annotations

from collections.abc import Callable

from archlint.format.json import render_json
from archlint.format.text import render_text
from archlint.report import Report

FORMATTERS: dict[str, Callable[[list[Report]], str]] = {
    "text": render_text,
    "json": render_json,
}
