"""``archlint profile``: measure a step at each length, beside its prediction.

The CLI wires ``archlint profile MODEL --seq-len ... --out DIR`` to :func:`run_profile`
and prints :func:`format_profile`. Before each length the step is predicted on fake
tensors; a length whose prediction (plus :data:`MARGIN`, plus what the last measured
length took outside torch's allocator) exceeds the memory the process may still take is
refused, never started. That limit is the tightest of ``MemAvailable``, the cgroup's
and the ulimits (:mod:`archlint.memlimit`), not ``MemAvailable`` alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch
from tqdm import tqdm

from archlint.classify import classify
from archlint.cost.predict import CostError, CostModel
from archlint.errors import ArchlintError
from archlint.guard import safe_text
from archlint.load import load_target
from archlint.memlimit import MemoryLimit, is_out_of_memory, memory_limit
from archlint.profile.measure import measure_step
from archlint.profile.report import ProfileReport, ProfileRow
from archlint.settings import Settings
from archlint.trace import trace_model
from archlint.units import format_bytes

#: headroom over the prediction before a run is allowed to start
MARGIN = 0.10


def run_profile(target: str, settings: Settings, out_dir: str,
                echo: Callable[[str], None] = print) -> ProfileReport:
    """Measure one step of ``target`` at every ``settings.seq_len``; traces go to ``out_dir``."""
    if settings.mode == "decode":
        raise ArchlintError("archlint profile measures train and infer steps: use "
                            "--mode train or --mode infer")
    loaded = load_target(target)
    if loaded.unbuilt:
        raise ArchlintError(f"{loaded.name}: archlint profile runs the model for real, but "
                            f"its {loaded.unbuilt_note}")
    model = CostModel(classify(trace_model(loaded)), settings)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    limit = free_memory(device)
    report = ProfileReport(model=loaded.name, mode=settings.mode, device=device,
                           free_memory=limit.free, memory_limit=limit.source,
                           trace_dir=out_dir)
    lengths = tqdm(settings.seq_len, desc="profile", unit="length", file=sys.stderr,
                   disable=len(settings.seq_len) < 2)
    previous = None
    for seq_len in lengths:
        lengths.set_postfix_str(f"n={seq_len}")
        row = _profile_length(loaded, model, seq_len, settings, out_dir, echo, previous)
        report.rows.append(row)
        previous = row if row.measured is not None else previous
    return report


def _profile_length(loaded, model: CostModel, seq_len: int, settings: Settings,  # noqa: ANN001
                    out_dir: str, echo: Callable[[str], None],
                    previous: ProfileRow | None = None) -> ProfileRow:
    try:
        predicted = model.predict(seq_len).peak
    except CostError as error:
        echo(f"n={seq_len}: skipped, {error}")
        return ProfileRow(seq_len, None, None, status=f"not predicted: {error}")
    limit = free_memory("cuda" if torch.cuda.is_available() else "cpu")
    outside = outside_torch(previous, predicted)
    need = predicted * (1 + MARGIN) + outside
    if need > limit.free:
        extra = (f" + {format_bytes(outside)} outside torch (as at n={previous.seq_len})"
                 if outside else "")
        reason = (f"refused: predicted {format_bytes(predicted)} (+{MARGIN:.0%}){extra} "
                  f"exceeds the {format_bytes(limit.free)} free ({limit.source})")
        echo(f"n={seq_len}: {reason}; not started")
        return ProfileRow(seq_len, predicted, None, status=reason)
    trace = os.path.join(out_dir, f"n{seq_len}")
    try:
        os.makedirs(trace, exist_ok=True)
    except OSError as error:
        raise ArchlintError(f"--out {out_dir}: cannot create {trace}: "
                            f"{error.strerror or error}") from None
    try:
        measured = measure_step(loaded.module, loaded.input_spec, seq_len, settings,
                                trace_dir=trace)
    except Exception as error:  # noqa: BLE001 - the user's forward failed for real
        text = safe_text(error)
        if is_out_of_memory(error):
            text = f"{text} (out of memory under the {memory_limit()} this machine allows)"
        echo(f"n={seq_len}: the real step failed: {type(error).__name__}: {text}")
        return ProfileRow(seq_len, predicted, None,
                          status=f"failed: {type(error).__name__}: {text}")
    return ProfileRow(seq_len, predicted, measured, trace=trace)


def outside_torch(previous: ProfileRow | None, predicted: int) -> int:
    """Bytes a step at the next length will likely take outside torch's allocator: what
    the last measured step's resident growth had beyond torch's own peak, scaled as the
    predicted peak grows (0 without a measured step)."""
    measured = previous.measured if previous is not None else None
    if measured is None or measured.rss_step is None or previous.predicted is None:
        return 0
    beyond = measured.rss_step - measured.step_peak
    if beyond <= 0:
        return 0
    return int(beyond * max(1.0, predicted / max(previous.predicted, 1)))


def free_memory(device: str) -> MemoryLimit:
    """What a step may still take: ``cudaMemGetInfo`` on CUDA; on CPU the tightest of
    ``MemAvailable``, the cgroup's limit and the process's ulimits
    (:func:`archlint.memlimit.memory_limit`)."""
    if device == "cuda":
        return MemoryLimit(torch.cuda.mem_get_info()[0], "cudaMemGetInfo")
    return memory_limit()


def format_profile(report: ProfileReport) -> str:
    """The text the CLI prints (no click needed)."""
    return report.render_text()
