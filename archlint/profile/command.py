"""``archlint profile``: measure a step at each length, beside its prediction.

The CLI wires ``archlint profile MODEL --seq-len ... --out DIR`` to :func:`run_profile`
and prints :func:`format_profile`. Before each length the step is predicted on fake
tensors; a length whose prediction (plus :data:`MARGIN`) exceeds the memory free on the
device is refused, never started.
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
from archlint.load import load_target
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
    model = CostModel(classify(trace_model(loaded)), settings)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = ProfileReport(model=loaded.name, mode=settings.mode, device=device,
                           free_memory=free_memory(device), trace_dir=out_dir)
    lengths = tqdm(settings.seq_len, desc="profile", unit="length", file=sys.stderr,
                   disable=len(settings.seq_len) < 2)
    for seq_len in lengths:
        lengths.set_postfix_str(f"n={seq_len}")
        report.rows.append(_profile_length(loaded, model, seq_len, settings, out_dir, echo))
    return report


def _profile_length(loaded, model: CostModel, seq_len: int, settings: Settings,  # noqa: ANN001
                    out_dir: str, echo: Callable[[str], None]) -> ProfileRow:
    try:
        predicted = model.predict(seq_len).peak
    except CostError as error:
        echo(f"n={seq_len}: skipped, {error}")
        return ProfileRow(seq_len, None, None, status=f"not predicted: {error}")
    free = free_memory("cuda" if torch.cuda.is_available() else "cpu")
    if predicted * (1 + MARGIN) > free:
        reason = (f"refused: predicted {format_bytes(predicted)} (+{MARGIN:.0%}) exceeds the "
                  f"{format_bytes(free)} free")
        echo(f"n={seq_len}: {reason}; not started")
        return ProfileRow(seq_len, predicted, None, status=reason)
    trace = os.path.join(out_dir, f"n{seq_len}")
    os.makedirs(trace, exist_ok=True)
    try:
        measured = measure_step(loaded.module, loaded.input_spec, seq_len, settings,
                                trace_dir=trace)
    except Exception as error:  # noqa: BLE001 - the user's forward failed for real
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        echo(f"n={seq_len}: the real step failed: {type(error).__name__}: {text}")
        return ProfileRow(seq_len, predicted, None,
                          status=f"failed: {type(error).__name__}: {text}")
    return ProfileRow(seq_len, predicted, measured, trace=trace)


def free_memory(device: str) -> int:
    """Bytes free now: ``cudaMemGetInfo`` on CUDA, ``MemAvailable`` on Linux CPU."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def format_profile(report: ProfileReport) -> str:
    """The text the CLI prints (no click needed)."""
    return report.render_text()
