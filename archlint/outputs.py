"""Where archlint writes: checked before the analysis, so a bad path costs nothing.

``-o report.json`` and ``profile --out DIR`` are checked in the parent process before
the model is imported (an analysis of minutes must not end in "cannot write"), against
the working directory of that moment (a model that calls ``os.chdir`` does not move the
report), and never onto a model file being checked.
"""

from __future__ import annotations

import os

from archlint.errors import ArchlintError
from archlint.target import parse_target


def checked_output(path: str | None, targets: list[str], option: str = "-o") -> str | None:
    """``-o PATH`` as an absolute path, refused when it cannot be written or is a target."""
    if path is None:
        return None
    absolute = os.path.abspath(path)
    if os.path.isdir(absolute):
        raise ArchlintError(f"{option} {path}: is a directory; pass a file path for the report")
    folder = os.path.dirname(absolute)
    if not os.path.isdir(folder):
        raise ArchlintError(f"{option} {path}: the folder {folder} does not exist; create it or "
                            f"pass another {option} path")
    if not os.access(folder, os.W_OK | os.X_OK) or (
            os.path.exists(absolute) and not os.access(absolute, os.W_OK)):
        raise ArchlintError(f"{option} {path}: not writable; pass a writable {option} path")
    for target in targets:
        model = parse_target(target).path
        if model and os.path.exists(absolute) and os.path.samefile(model, absolute):
            raise ArchlintError(f"{option} {path}: is the model file {target}; writing the report "
                                "there would overwrite the model: pass another path")
    return absolute


def write_report(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ArchlintError(f"{path}: cannot write the report ({exc.strerror}); "
                            "pass a writable --output path") from exc


def checked_directory(path: str, option: str) -> str:
    """A folder archlint will create files in: an existing writable folder, or one that
    can be created under the nearest existing ancestor. Returns it as an absolute path."""
    absolute = os.path.abspath(path)
    probe = absolute
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ArchlintError(f"{option} {path}: {probe} is not a folder; pass a folder path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ArchlintError(f"{option} {path}: {probe} is not writable; pass a writable "
                            "folder")
    return absolute
