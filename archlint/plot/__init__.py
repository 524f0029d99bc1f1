"""Pictures of finished reports: cost against n, the memory split, the ERF profile.

``archlint check ... --plot DIR`` writes, per model, ``STEM-cost.png`` (peak memory and
FLOPs against n, log-log, the budget, the largest n that fits, the attention crossover),
``STEM-memory.png`` (the bytes at the peak by category at the target n),
``STEM-erf.png`` (the gradient mass by input offset against the static receptive field;
only where the gradient probe ran) and ``STEM.html`` (all of them embedded, with the
plotted data as JSON). ``archlint advise ... --plot DIR`` writes the same, plus
``STEM-advice.png``: the model and every evaluated change on the two axes, peak memory
against the dependency path (:mod:`archlint.plot.advice`). Nothing is re-analyzed: the
pictures read the report.

From Python, after an analysis (torch is loaded by then; matplotlib must be installed,
``pip install 'archlint[plot]'``)::

    from archlint.plot import write_plots
    paths = write_plots([report], "pictures")      # -> [Path, ...], the files written

A command that takes ``--plot DIR`` calls :func:`checked_plot_directory` in the parent,
before the analysis (importing this package imports neither torch nor matplotlib), and
:func:`write_plots` where the reports are.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archlint.errors import ArchlintError

if TYPE_CHECKING:
    from archlint.report import Report

INSTALL_HINT = "pip install 'archlint[plot]'"

__all__ = ["INSTALL_HINT", "checked_plot_directory", "require_matplotlib", "stem_for",
           "write_model_plots", "write_plots"]


def checked_plot_directory(path: str, option: str = "--plot") -> str:
    """``--plot DIR`` before the analysis: matplotlib importable and DIR an existing or
    creatable writable folder, else an :class:`ArchlintError` (one line, exit 2).
    Returns DIR as an absolute path."""
    from archlint.outputs import checked_directory

    require_matplotlib(option)
    return checked_directory(path, option)


def require_matplotlib(option: str = "--plot") -> None:
    """Refuse ``option`` in one line when matplotlib cannot be imported (found without
    importing it: this runs before the analysis)."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ArchlintError(f"{option} needs matplotlib, which is not installed: "
                            f"{INSTALL_HINT}")


def write_plots(reports: Sequence[Report], directory: str | os.PathLike,
                advice: Sequence[Any] | None = None) -> list[Path]:
    """Write every report's pictures and page into ``directory`` (created if missing);
    returns the paths written, in order. Two reports of one model file get distinct
    stems (``model``, ``model-2``). ``advice``: one
    :class:`~archlint.advise.AdviceReport` per report (``archlint advise --plot``),
    drawn as ``STEM-advice.png`` and tabled on the page."""
    taken: set[str] = set()
    written: list[Path] = []
    advised = list(advice) if advice is not None else [None] * len(reports)
    for report, model_advice in zip(reports, advised, strict=True):
        stem = stem_for(report.model.name, taken)
        taken.add(stem)
        written.extend(write_model_plots(report, directory, stem, model_advice))
    return written


def stem_for(name: str, taken: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """A file name stem for a model: ``fixtures/gpt.py:build_model`` -> ``gpt-build_model``;
    a stem already ``taken`` gets ``-2``, ``-3``, ..."""
    path, _, attr = name.rpartition(":") if ":" in name else (name, "", "")
    base = os.path.basename(path)
    base = base[:-3] if base.endswith(".py") else base
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(p for p in (base, attr) if p)) or "model"
    candidate, count = stem, 1
    while candidate in taken:
        count += 1
        candidate = f"{stem}-{count}"
    return candidate


def write_model_plots(report: Report, directory: str | os.PathLike, stem: str,
                      advice: Any = None) -> list[Path]:
    """One report's PNGs and HTML page, named ``STEM-*.png`` and ``STEM.html``."""
    from archlint.plot.render import render_model

    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        files = render_model(report, advice)
        written = []
        for suffix, content in files.items():
            path = folder / f"{stem}{suffix}"
            path.write_bytes(content)
            written.append(path)
    except OSError as exc:
        raise ArchlintError(f"--plot {directory}: cannot write the pictures "
                            f"({exc.strerror or exc}); pass a writable folder") from exc
    return written
