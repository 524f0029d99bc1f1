"""A content-keyed cache of whole ``archlint check`` answers, the way ruff and mypy cache.

An unchanged model checked again with the same settings gets the same bytes, so the
second run need not import torch at all: the parent looks the answer up before it forks
the analysis child. What decides "unchanged":

- the *invocation key*, computed in the parent without importing torch: archlint's
  version and a digest of its own source files, torch's and Python's versions (read from
  package metadata), the working directory, the targets, every target's resolved
  settings (flags over ``[tool.archlint]`` over defaults), the output format and colour,
  and the content of a ``--baseline`` file;
- the *dependencies* recorded by the child after the analysis: every file of the user's
  project the run imported (the model file, the modules it imports from the project,
  i.e. everything outside the standard library, site-packages and archlint), each with
  its SHA-256. An entry is valid only while every one of them still hashes the same.

Entries live in ``$XDG_CACHE_HOME/archlint`` (else ``~/.cache/archlint``), one JSON file
per invocation key, written atomically. An entry that cannot be read, parsed or trusted
is ignored and rewritten: the cache can make a run faster, never fail it. ``--no-cache``,
``cache = false`` in ``[tool.archlint]`` or ``ARCHLINT_NO_CACHE=1`` skip it; runs that
write side files (``--write-baseline``) are never answered from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: bump when the entry layout changes: older entries are then simply never found
FORMAT = 1
_ENV_OFF = "ARCHLINT_NO_CACHE"


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the rendered report and the exit code it came with."""

    text: str
    code: int


def cache_dir() -> Path:
    """Where entries live: ``$XDG_CACHE_HOME/archlint``, else ``~/.cache/archlint``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "archlint"


def disabled_by_environment() -> bool:
    return os.environ.get(_ENV_OFF, "").strip().lower() not in ("", "0", "false", "no")


def invocation_key(material: dict[str, Any]) -> str:
    """The key of one invocation: ``material`` (targets, settings, format, ...) plus the
    versions of everything that computes the answer. Needs no torch import."""
    full = {"format": FORMAT, "archlint": _archlint_digest(), "torch": _version("torch"),
            "transformers": _version("transformers"),
            "python": sys.version, "cwd": os.getcwd(), **material}
    text = json.dumps(full, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def lookup(key: str) -> CachedAnswer | None:
    """The stored answer for ``key`` if every file it depended on is unchanged."""
    try:
        entry = json.loads((cache_dir() / f"{key}.json").read_text(encoding="utf-8"))
        if entry.get("format") != FORMAT or entry.get("key") != key:
            return None
        deps = entry["deps"]
        if not isinstance(deps, dict) or not deps:
            return None
        for path, digest in deps.items():
            if file_digest(path) != digest:
                return None
        text, code = entry["text"], entry["code"]
        if not isinstance(text, str) or not isinstance(code, int):
            return None
        return CachedAnswer(text=text, code=code)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None                          # unreadable or corrupt: a miss, rewritten later


def store(key: str, answer: CachedAnswer, deps: dict[str, str]) -> None:
    """Write the entry atomically; a cache that cannot be written is skipped silently."""
    if not deps:
        return
    entry = {"format": FORMAT, "key": key, "deps": deps, "text": answer.text,
             "code": answer.code}
    directory = cache_dir()
    with contextlib.suppress(OSError):
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".entry-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(entry, stream)
            os.replace(temporary, directory / f"{key}.json")
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def project_files(extra: Iterable[str] = ()) -> dict[str, str]:
    """The user's files this process imported, with their digests (run in the child,
    after the analysis): every loaded module whose file lies outside the standard
    library, site-packages and archlint, plus ``extra`` (the target files)."""
    outside = _library_roots()
    paths = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path.endswith(".py"):
            continue
        real = os.path.realpath(path)
        if not any(real.startswith(root) for root in outside):
            paths.add(real)
    paths.update(os.path.realpath(p) for p in extra)
    digests = {}
    for path in sorted(paths):
        digest = file_digest(path)
        if digest is not None:
            digests[path] = digest
    return digests


def _library_roots() -> tuple[str, ...]:
    roots = {os.path.realpath(sysconfig.get_path(name))
             for name in ("stdlib", "platstdlib", "purelib", "platlib")
             if sysconfig.get_path(name)}
    roots.update(os.path.realpath(p) for p in sys.path if "site-packages" in p)
    roots.add(os.path.realpath(Path(__file__).parent))      # archlint: in its own digest
    return tuple(root.rstrip(os.sep) + os.sep for root in roots)


def _archlint_digest() -> str:
    """Name, size and mtime of every archlint source file: an edited checkout of
    archlint (not only a new release) invalidates the cache."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        with contextlib.suppress(OSError):
            stat = path.stat()
            digest.update(f"{path.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
