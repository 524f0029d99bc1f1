"""The reach section of a report: R, ERF, L(span), L(n-1), S(n), per model and per layer.

:class:`ReachReport` implements the :class:`archlint.report.Section` protocol. JSON keys
are named for the quantity (``receptive_field``, ``effective_stride``,
``effective_receptive_field``, ``dependency_path``, ``serial_steps``); every quantity that
depends on n is given both as an expression (``"n"``, ``"2n"``, ``"n-1"``) and evaluated
at the target length.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from tabulate import tabulate

from archlint.reach.descriptor import Expr
from archlint.reach.layers import LayerRow
from archlint.reach.measures import Causality, Field
from archlint.reach.probes import ProbeResult


def _number(value: float | None) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return int(value) if float(value).is_integer() else float(value)


def expr_dict(expr: Expr, n: int) -> dict[str, Any]:
    return {"expr": str(expr), "at_target": _number(expr.at(n))}


def field_dict(rf: Field, n: int) -> dict[str, Any]:
    return {"expr": str(rf.size), "at_target": _number(min(rf.size.at(n), n)),
            "shape": rf.shape, "left": _number(rf.left), "right": _number(rf.right)}


@dataclass
class ReachReport:
    """Everything archlint knows about how far information travels in one model."""

    target_len: int
    span: int | None
    source: str                                 # "graph" | "chain"
    frontend: str
    axes: tuple[str, ...]
    fields: dict[str, Field]                    # per axis, at the primary output
    effective_stride: Fraction | None
    output_length: Expr | None
    causality: Causality | None
    leak_layer: LayerRow | None
    meant_causal: bool
    meant_causal_because: str
    dependency_path: float | None               # L(span) (None without a span)
    longest_path: Expr                          # L(n-1)
    serial_steps: Expr
    layers: list[LayerRow]
    trace_len: int
    recurrences: list[LayerRow] = field(default_factory=list)
    order_blind_attention: list[LayerRow] = field(default_factory=list)
    probe: ProbeResult | None = None
    expected_support: dict[str, tuple[int, int]] | None = None
    agreement: bool | None = None
    trusted: str = "static"
    trust_reason: str = ""
    #: the static pass predicted a look-ahead the probe, which could see it, did not find
    causal_measured: bool = False
    unattributed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def receptive_field(self) -> Field:
        return self.fields[self.axes[0]]

    @property
    def causal(self) -> bool | None:
        """The verdict archlint acts on: the probe's when it is the one trusted, or when it
        measured no look-ahead where the static pass predicted one."""
        if self.causal_measured:
            return True
        if self.trusted == "probe" and self.probe is not None and self.probe.causal is not None:
            return self.probe.causal
        return None if self.causality is None else self.causality.causal

    def to_dict(self) -> dict[str, Any]:
        n = self.target_len
        return {
            "source": self.source,
            "frontend": self.frontend,
            "target_len": n,
            "span": self.span,
            "receptive_field": {axis: field_dict(self.fields[axis], n) for axis in self.axes}
            if len(self.axes) > 1 else field_dict(self.receptive_field, n),
            "effective_stride": _number(self.effective_stride),
            "output_length": None if self.output_length is None
            else expr_dict(self.output_length, n),
            "effective_receptive_field": self._erf_dict(),
            "dependency_path": {
                "span": self.span,
                "at_span": _number(self.dependency_path),
                "longest": expr_dict(self.longest_path, n),
            },
            "serial_steps": expr_dict(self.serial_steps, n),
            "causal": self.causal,
            "causality": self._causality_dict(),
            "order_blind_attention": [row.name for row in self.order_blind_attention],
            "probe": self._probe_dict(),
            "layers": [self._layer_dict(row) for row in self.layers],
            "unattributed": list(self.unattributed),
            "notes": list(self.notes),
        }

    def _erf_dict(self) -> dict[str, Any] | None:
        if self.probe is None:
            return None
        out = {}
        for axis in self.axes:
            erf = dict(self.probe.erf.get(axis, {}))
            support = self.probe.support.get(axis)
            if support and support[0] >= 0 and erf:
                erf["fraction_of_rf"] = round(erf["span"] / (support[1] - support[0] + 1), 4)
            out[axis] = erf
        return out[self.axes[0]] if len(self.axes) == 1 else out

    def _causality_dict(self) -> dict[str, Any] | None:
        if self.causality is None:
            return None
        c = self.causality
        return {"by_index": c.by_index, "by_end": c.by_end,
                "ahead_by_index": _number(c.ahead_by_index),
                "ahead_by_end": _number(c.ahead_by_end),
                "output_length": str(c.length_change),
                "leak_layer": self.leak_layer.name if self.leak_layer else None,
                "meant_causal": self.meant_causal, "because": self.meant_causal_because}

    def _probe_dict(self) -> dict[str, Any] | None:
        if self.probe is None:
            return None
        p = self.probe
        return {"probe_len": p.probe_len, "position": p.position, "seeds": p.seeds,
                "dtype": p.dtype, "gradient_support": {a: list(s) for a, s in p.support.items()},
                "static_support": None if self.expected_support is None else
                {a: list(s) for a, s in self.expected_support.items()},
                "agrees": self.agreement, "trusted": self.trusted, "reason": self.trust_reason,
                "causal": p.causal, "ahead": p.ahead, "order_blind": p.order_blind,
                "attention_order_blind": dict(p.attention_order_blind),
                "mass_profile": {a: list(m) for a, m in p.mass_profile.items()},
                "aligned_input": dict(p.aligned_input),
                "notes": list(p.notes)}

    def _layer_dict(self, row: LayerRow) -> dict[str, Any]:
        n = self.target_len
        return {
            "layer": row.name, "kind": row.kind,
            "location": None if row.location is None else str(row.location),
            "receptive_field": {a: field_dict(f, n) for a, f in row.fields.items()}
            if len(row.fields) > 1 else field_dict(next(iter(row.fields.values())), n),
            "effective_stride": _number(row.jump),
            "dependency_path": _number(row.dependency_path),
            "longest_dependency_path": expr_dict(row.longest_path, n),
            "serial_steps": expr_dict(row.serial_steps, n),
            "reach": {"left": _number(row.reach_left), "right": _number(row.reach_right)},
            "causal": row.causal,
            "effective_receptive_field": row.effective_receptive_field,
        }

    def render_text(self) -> str:
        n = self.target_len
        lines = [f"Reach at n={n} ({'graph' if self.source == 'graph' else 'layer chain'}, "
                 f"{self.frontend})"]
        for axis in self.axes:
            field_ = self.fields[axis]
            label = "receptive field" if len(self.axes) == 1 else f"receptive field ({axis})"
            lines.append(f"  {label:<22} {field_.describe()}  "
                         f"[left {_fmt(field_.left)}, right {_fmt(field_.right)}]")
        if self.effective_stride is not None:
            lines.append(f"  {'effective stride':<22} {_number(self.effective_stride)}")
        if self.probe is not None:
            erf = self.probe.erf.get(self.axes[0], {})
            support = self.probe.support.get(self.axes[0])
            if erf and support:
                size = support[1] - support[0] + 1
                lines.append(f"  {'effective RF (95%)':<22} {erf['span']} of {size} positions "
                             f"at probe length {self.probe.probe_len}")
        if self.span:
            lines.append(f"  {'dependency path L(' + str(self.span - 1) + ')':<22} "
                         f"{_fmt(self.dependency_path)} hops")
        lines.append(f"  {'longest path L(n-1)':<22} {_at(self.longest_path, n)}")
        lines.append(f"  {'serial steps S(n)':<22} {_at(self.serial_steps, n)}")
        lines.append(f"  {'causal':<22} {self._causal_text()}")
        if self.probe is not None:
            verdict = "agree" if self.agreement else f"disagree; trusting the {self.trusted}"
            lines.append(f"  {'static vs gradient':<22} {verdict}"
                         + (f": {self.trust_reason}" if self.trust_reason else ""))
        if self.layers:
            table = [[row.name, row.kind, _row_field(row, n), _number(row.jump) or "-",
                      _fmt(row.dependency_path), str(row.serial_steps),
                      row.effective_receptive_field["span"]
                      if row.effective_receptive_field else "-"] for row in self.layers]
            head = ["layer", "kind", "R", "stride",
                    f"L({self.span - 1})" if self.span else "L(n-1)", "S", "ERF"]
            lines.append(tabulate(table, headers=head, tablefmt="simple",
                                  maxcolwidths=[22, None, 12, None, None, None, None]))
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.unattributed:
            lines.append("  unattributed (handled conservatively): " + ", ".join(self.unattributed))
        return "\n".join(_wrap(line) for line in lines)

    def _causal_text(self) -> str:
        if self.causality is None:
            return "n/a (the output has no sequence axis)"
        c = self.causality
        if c.causal:
            return "yes"
        if self.causal is True:
            return (f"yes (measured by the gradient probe at length {self.probe.probe_len}; "
                    f"the static pass predicted t+{_fmt(max(c.ahead_by_index, c.ahead_by_end))})")
        parts = []
        if not c.by_index:
            parts.append(f"output t reads up to t+{_fmt(c.ahead_by_index)}")
        elif not c.by_end:
            parts.append(f"output length {c.length_change}: aligned at the end, output t "
                         f"reads up to t+{_fmt(c.ahead_by_end)}")
        if self.leak_layer is not None:
            parts.append(f"first through {self.leak_layer.name}")
        return "no (" + "; ".join(parts) + ")"


def _row_field(row: LayerRow, n: int) -> str:
    return " x ".join(f.describe() for f in row.fields.values())


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return str(_number(value))


def _at(expression, n: int) -> str:
    """``2n = 2048`` for an expression in n; just ``6`` for a constant."""
    value = _fmt(expression.at(n))
    text = str(expression)
    return value if text == value else f"{text} = {value}"


def _wrap(line: str, width: int = 80) -> str:
    """Fold a long ``  label   value`` line under its value column (tables stay as they are)."""
    if len(line) <= width or not line.startswith("  ") or "\n" in line:
        return line
    indent = " " * (25 if line[2:24].strip() and line[24:25] == " " else 4)
    return textwrap.fill(line, width=width, subsequent_indent=indent,
                         break_on_hyphens=False)
