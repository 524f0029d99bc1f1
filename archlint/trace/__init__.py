"""Stage 2: an ``nn.Module`` + input -> a torch.fx :class:`ModelGraph`.

Front-ends, tried in order, each failure recorded in ``ModelGraph.frontend_notes``:

1. ``torch.export`` (non-strict): ATen graph with ``nn_module_stack`` (preferred);
2. ``torch.fx.symbolic_trace`` with recurrent/attention modules as leaves;
3. an eager forward recorded op by op (:mod:`archlint.trace.eager`).

The length is chosen per model (:mod:`archlint.trace.length`): the first length the
model accepts (the load stage found it), doubled while some conv or pool window covers the
whole axis it slides over, so a fixed window is never mistaken for global mixing. The
target length itself is never traced unless it is that short.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from archlint.errors import ArchlintError
from archlint.graph import META_MODULE, ModelGraph
from archlint.load import LoadedModel
from archlint.load.state import preserved_state
from archlint.trace.eager import eager_graph
from archlint.trace.export import export_graph
from archlint.trace.length import MAX_GROWTH, MAX_TRACE_LEN, MAX_TRACE_SIDE, covering_windows
from archlint.trace.symbolic import symbolic_graph

#: Default length the structure is traced at (see archlint.load.inputs.VALIDATION_LEN).
TRACE_LEN = 40

FRONTENDS: tuple[tuple[str, Callable[..., torch.fx.GraphModule]], ...] = (
    ("torch.export", export_graph),
    ("symbolic_trace", symbolic_graph),
    ("hooks", eager_graph),
)


def trace_model(loaded: LoadedModel, trace_len: int = TRACE_LEN,
                frontends: tuple[str, ...] | None = None,
                target_len: int | None = None) -> ModelGraph:
    """Trace ``loaded.module`` at ``trace_len`` (at least the shortest length the model
    accepts), doubled while a conv/pool window covers a whole axis, up to ``target_len``."""
    spec = loaded.input_spec
    length = max(trace_len, spec.min_len)
    limit = MAX_TRACE_SIDE if spec.spatial else MAX_TRACE_LEN
    if target_len is not None:
        limit = min(limit, max(length, target_len))
    graph = _trace_at(loaded, length, frontends)
    for _ in range(MAX_GROWTH):
        covering = covering_windows(graph.graph_module) if graph.frontend == "torch.export" \
            else []
        if not covering or length * 2 > limit:
            break
        try:
            longer = _trace_at(loaded, length * 2, ("torch.export",))
        except ArchlintError:
            break
        graph.frontend_notes.append(
            f"traced again at n={length * 2}: at n={length} a window covers a whole axis "
            f"({covering[0]})")
        longer.frontend_notes = graph.frontend_notes
        graph, length = longer, length * 2
    return graph


def _trace_at(loaded: LoadedModel, length: int, frontends: tuple[str, ...] | None
              ) -> ModelGraph:
    """Trace at exactly ``length`` with the first front-end that works."""
    spec = loaded.input_spec
    notes: list[str] = []
    for name, frontend in FRONTENDS:
        if frontends is not None and name not in frontends:
            continue
        args = spec.make(length, 1)
        try:
            with preserved_state(loaded.module):
                graph_module = frontend(loaded.module, args, dict(spec.kwargs))
        except Exception as exc:  # noqa: BLE001 - each front-end fails in its own ways
            notes.append(f"{name} failed: {type(exc).__name__}: {_first_line(exc)}")
            continue
        graph = ModelGraph(
            module=loaded.module, input_spec=spec, trace_len=length,
            graph_module=graph_module, frontend=name, frontend_notes=notes,
            locations=dict(loaded.locations), user_sites=dict(loaded.user_sites))
        graph.module_calls = _module_calls(graph_module)
        return graph
    raise ArchlintError(
        f"{loaded.name}: could not trace the model ({'; '.join(notes)}); "
        "run with --debug for details")


def _module_calls(graph_module: torch.fx.GraphModule) -> list[str]:
    """Module paths in the order their ops first appear."""
    seen: dict[str, None] = {}
    for node in graph_module.graph.nodes:
        path = node.meta.get(META_MODULE)
        if path is not None and node.op in ("call_function", "call_module"):
            seen.setdefault(path, None)
    return list(seen)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "(no message)"
