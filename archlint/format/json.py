"""``--format json``: one document with every report (schema in docs/json-schema.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from archlint.report import SCHEMA_VERSION, Report

if TYPE_CHECKING:
    from archlint.format import FormatOptions


def render_json(reports: list[Report], options: FormatOptions | None = None) -> str:
    document = {
        "schema_version": SCHEMA_VERSION,
        "reports": [report.to_dict() for report in reports],
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
