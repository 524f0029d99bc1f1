"""Stage 2: an ``nn.Module`` + input -> a torch.fx :class:`ModelGraph`.

Front-ends, tried in order, each failure recorded in ``ModelGraph.frontend_notes``:

1. ``torch.export`` (non-strict): ATen graph with ``nn_module_stack`` (preferred);
2. ``torch.fx.symbolic_trace`` with recurrent/attention modules as leaves;
3. an eager forward recorded op by op (:mod:`archlint.trace.eager`).

All of them run at the short ``trace_len``: the target length is never traced.
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
from archlint.trace.symbolic import symbolic_graph

#: Default length the structure is traced at (see archlint.load.inputs.VALIDATION_LEN).
TRACE_LEN = 40

FRONTENDS: tuple[tuple[str, Callable[..., torch.fx.GraphModule]], ...] = (
    ("torch.export", export_graph),
    ("symbolic_trace", symbolic_graph),
    ("hooks", eager_graph),
)


def trace_model(loaded: LoadedModel, trace_len: int = TRACE_LEN,
                frontends: tuple[str, ...] | None = None) -> ModelGraph:
    """Trace ``loaded.module`` at ``trace_len`` with the first front-end that works."""
    spec = loaded.input_spec
    length = max(trace_len, spec.min_len)
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
