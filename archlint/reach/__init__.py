"""Reach: receptive field, effective receptive field, dependency path and serial steps.

``analyze(graph, settings)`` runs the static pass over the traced graph (or composes the
classified layers as a chain when there is no ATen graph), reads the quantities off the
model's output, and, unless ``settings.dynamic`` is off, checks them against gradient
probes on real tensors at a small length (:mod:`archlint.reach.probes`).
"""

from __future__ import annotations

import math

from archlint.graph import META_MODULE, ModelGraph
from archlint.kinds import LayerKind
from archlint.reach.chain import chain_reach
from archlint.reach.descriptor import FrameReach, TensorReach
from archlint.reach.hops import INF
from archlint.reach.layers import LayerRow, find_leak, layer_rows, row_of
from archlint.reach.measures import (
    causality,
    dependency_path,
    longest_path,
    output_length,
    receptive_field,
)
from archlint.reach.probes import ProbePlan, run_probes
from archlint.reach.report import ReachReport
from archlint.reach.static import frame_names, propagate
from archlint.settings import Settings

__all__ = ["analyze", "ReachReport"]

#: longest probe the static R may ask for (the probe must see the whole window)
MAX_PROBE_LEN = 1024
#: models up to this many parameters get extra random inputs when the gradient support
#: falls short of the static one
SMALL_MODEL = 20_000_000


def analyze(graph: ModelGraph, settings: Settings) -> ReachReport:
    """The reach section of a report for ``graph`` under ``settings``."""
    n, span = settings.target_len, settings.span
    names = frame_names(graph)
    notes: list[str] = []
    unattributed: list[str] = []
    output_index, leak_row = 0, None
    reach = None
    if graph.graph_module is not None and graph.frontend != "symbolic_trace":
        result = propagate(graph)
        primary = result.primary
        reach = result.of(primary) if primary is not None else None
        if reach is not None:
            source = "graph"
            rows = layer_rows(graph, result, n, span)
            output_index = result.outputs.index(primary)
            leak_row = _leak_row(graph, result, primary, rows)
            notes.extend(result.notes)
            unattributed = [f"{name} x{count}" for name, count in
                            sorted(result.unattributed.items())]
        else:
            notes.append("the graph's outputs do not depend on the sequence input: "
                         "composing the layers as a chain instead")
    if reach is None:
        source = "chain"
        reach, rows, note = chain_reach(graph, names, n, span)
        notes.append(note)
    frames = {axis: reach.frames.get(axis) or FrameReach(None, None) for axis in names}
    first = frames[names[0]]
    verdict = causality(first, graph.trace_len)
    meant, because = _meant_causal(graph, rows, settings)
    report = ReachReport(
        target_len=n, span=span, source=source, frontend=graph.frontend, axes=names,
        fields={axis: receptive_field(f, graph.trace_len) for axis, f in frames.items()},
        effective_stride=first.jump if first.dim is not None else None,
        output_length=output_length(first, graph.trace_len) if first.dim is not None else None,
        causality=verdict, leak_layer=leak_row if verdict and not verdict.causal else None,
        meant_causal=meant, meant_causal_because=because,
        dependency_path=dependency_path(first, span - 1) if span else None,
        longest_path=longest_path(first, n), serial_steps=reach.serial.expr(graph.trace_len),
        layers=rows, trace_len=graph.trace_len,
        recurrences=[r for r in rows if r.kind == LayerKind.RECURRENCE.value],
        order_blind_attention=[r for r in rows if r.order_blind],
        unattributed=unattributed, notes=notes)
    if settings.dynamic:
        _probe(graph, settings, report, frames, output_index)
    return report


def _leak_row(graph, result, primary, rows) -> LayerRow | None:
    node = find_leak(graph, result, primary)
    if node is None:
        return None
    found = row_of(rows, node)
    if found is not None:
        return found
    module = node.meta.get(META_MODULE) or type(graph.module).__name__
    location = graph.locations.get(node.meta.get(META_MODULE) or "")
    for row in rows:
        if row.name.startswith(module):
            return row
    return LayerRow(module, "op", location, None, {}, None, None, _none(), _none(), 0.0, 0.0,
                    False, node=node)


def _none():
    from archlint.reach.descriptor import Expr
    return Expr()


def _meant_causal(graph: ModelGraph, rows: list[LayerRow], settings: Settings
                  ) -> tuple[bool, str]:
    """Is the model meant to be causal? Only real evidence counts: the user says so, a
    causal attention mask, a causal conv whose kernel is wider than 1 (left-only padding;
    a 1x1 conv is causal trivially and says nothing), a module that declares
    ``causal = True`` / ``is_causal = True``."""
    if settings.causal is not None:
        return settings.causal, "--causal" if settings.causal else "--no-causal"
    for row in rows:
        band = row.detail.get("band")
        if row.kind == "attention" and band and band[1] <= 0 < -band[0]:
            return True, f"{row.name} is causal attention"
        if row.kind == "conv" and row.reach_right == 0 < row.reach_left and _wide(row.layer):
            return True, f"{row.name} is a causal conv (kernel > 1, padded on the left only)"
        if row.kind == "ssm" and row.reach_right == 0 < row.reach_left:
            return True, f"{row.name} is a causal {row.kind}"
    for layer in graph.layers:
        if layer.params.get("causal") is True and (
                layer.kind is LayerKind.ATTENTION or
                layer.kind is LayerKind.CONV and _wide(layer)):
            return True, f"{layer.name} is a causal {layer.kind.value}"
    for path, module in graph.module.named_modules():
        for flag in ("causal", "is_causal"):
            if getattr(module, flag, None) is True:
                return True, f"{path or type(module).__name__} declares {flag} = True"
    return False, ""


def _wide(layer) -> bool:
    """A conv layer with a kernel wider than 1 along some axis (unknown: not evidence)."""
    if layer is None:
        return False
    kernel = layer.params.get("kernel_size")
    kernels = kernel if isinstance(kernel, (tuple, list)) else (kernel,)
    return any(isinstance(k, int) and k > 1 for k in kernels)


def probe_length(report: ReachReport, settings: Settings) -> int:
    """Long enough that the probed position sees its whole static window, and not a
    multiple of 8, so that a layer's sequence axis is not mistaken for a channel axis of
    the same size."""
    length = settings.probe_len
    for rf in report.fields.values():
        if rf.shape == "bounded":
            need = int(rf.size.at(settings.target_len)) * 2 + 16
            if report.effective_stride:
                need = max(need, int(8 * report.effective_stride))
            length = max(length, min(MAX_PROBE_LEN, need))
    if length % 8 == 0:
        length += 6
    return length


def _probe(graph: ModelGraph, settings: Settings, report: ReachReport,
           frames: dict[str, FrameReach], output_index: int) -> None:
    preferred = probe_length(report, settings)
    errors = []
    # an unusual length first; models that need a multiple (chunks, patches) get the
    # plain probe length, then the length the graph was traced at
    for length in dict.fromkeys((preferred, preferred - 6 if preferred % 8 == 6 else preferred,
                                 settings.probe_len, graph.trace_len)):
        plan = _plan(graph, report, frames, output_index, length)
        try:
            report.probe = run_probes(graph, plan)
            break
        except Exception as exc:  # noqa: BLE001 - the static result stands on its own
            errors.append(f"at length {length}: {type(exc).__name__}: {exc}")
    if report.probe is None:
        report.notes.append(f"gradient probe failed ({'; '.join(errors)}); static results only")
        return
    length = report.probe.probe_len
    expected = {axis: expected_support(f, report.probe.positions.get(axis), length,
                                       graph.trace_len) for axis, f in frames.items()}
    report.expected_support = expected
    report.agreement = all(expected[a] == report.probe.support.get(a) for a in expected)
    report.trusted, report.trust_reason = _trust(report)
    static = report.causality
    if static is not None and not static.causal and report.probe.causal is True:
        # the probe reads every output up to its position against every later input: a
        # look-ahead of 1 or more would show; none did
        report.causal_measured = True
        report.notes.append(
            "the static pass predicts a look-ahead the gradient probe does not find at "
            f"length {length}: the measurement is trusted (causal)")
    for row in report.layers:
        found = report.probe.layers.get(row.name)
        if found is not None and row.node is not None:
            frame = _row_frame(row)
            static = expected_support(frame, found["position"], length, graph.trace_len) \
                if frame is not None else None
            row.effective_receptive_field = {
                "span": found["span"], "start": found["start"], "end": found["end"],
                "gradient_support": list(found["support"]),
                "static_support": None if static is None else list(static)}


def _plan(graph: ModelGraph, report: ReachReport, frames: dict[str, FrameReach],
          output_index: int, length: int) -> ProbePlan:
    small = _parameters(graph) <= SMALL_MODEL
    return ProbePlan(
        probe_len=length, output_index=output_index,
        output_dims=tuple(f.dim for f in frames.values()),
        jump=float(frames[report.axes[0]].jump),
        attention_modules=tuple(sorted({r.name for r in report.layers
                                        if r.kind == "attention" and ":" not in r.name
                                        and _is_module(graph, r.name)})),
        expect=lambda positions: {
            axis: expected_support(f, positions.get(axis), length, graph.trace_len)
            for axis, f in frames.items()},
        max_seeds=36 if small else 4,
        order=any(r.order_blind or r.kind == "attention" and r.detail.get("band") == (-INF, INF)
                  for r in report.layers),
        layers=tuple(_layer_plan(graph, report.layers, length) if small else ()))


def _layer_plan(graph: ModelGraph, rows: list[LayerRow], length: int):
    """(module, stride, output length at the probe length) of each probeable layer."""
    for row in rows:
        frame = _row_frame(row)
        if ":" in row.name or frame is None or frame.dim is None or \
                not _is_module(graph, row.name):
            continue
        size = frame.length + (length - graph.trace_len) / frame.jump
        yield row.name, float(frame.jump), float(size)


def _row_frame(row: LayerRow) -> FrameReach | None:
    reach = row.node.meta.get("archlint.reach") if row.node is not None else None
    if isinstance(reach, tuple):
        reach = next((r for r in reach if isinstance(r, TensorReach)), None)
    return next(iter(reach.frames.values()), None) if isinstance(reach, TensorReach) else None


def _parameters(graph: ModelGraph) -> int:
    return sum(p.numel() for p in graph.module.parameters())


def _is_module(graph: ModelGraph, path: str) -> bool:
    try:
        graph.module.get_submodule(path)
        return True
    except AttributeError:
        return False


def expected_support(frame: FrameReach, position: int | None, length: int, trace_len: int
                     ) -> tuple[int, int]:
    """The input positions the static reach says output ``position`` reads at ``length``."""
    parts = []
    if frame.dim is not None and frame.window is not None and position is not None:
        lo, hi = frame.window
        own = frame.jump * position
        parts.append((0 if lo == -INF else max(0, math.floor(own + lo)),
                      length - 1 if hi == INF else min(length - 1, math.ceil(own + hi))))
    if frame.span is not None:
        span = frame.span
        start = span.start + (length - trace_len if span.start_from_end else 0)
        end = span.end + (length - trace_len if span.end_from_end else 0)
        parts.append((max(0, start), min(length - 1, end)))
    if not parts:
        return (-1, -1)
    return min(p[0] for p in parts), max(p[1] for p in parts)


def _trust(report: ReachReport) -> tuple[str, str]:
    if report.agreement:
        return "static", "the gradient support equals the static receptive field"
    wider = any(_inside(report.probe.support[a], report.expected_support[a]) is False
                for a in report.axes if a in report.probe.support)
    if wider:
        return "probe", ("the gradient reaches positions the static pass did not predict "
                         "(an op it does not model exactly)")
    approximate = [note for note in report.notes if "depends on the input" in note
                   or "treated as global" in note or "widened" in note]
    if report.unattributed or approximate:
        reason = approximate[0] if approximate else \
            f"ops handled conservatively: {', '.join(report.unattributed)}"
        return "probe", f"the static reach is an upper bound here: {reason}"
    return "static", ("the static reach is exact for the ops it models; gradients can vanish "
                      "on some paths (dead ReLUs, max pooling, zero weights) at this probe")


def _inside(inner: tuple[int, int], outer: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


__all__ += ["TensorReach", "expected_support", "probe_length"]
