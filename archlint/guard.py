"""The user's code runs inside a guard: whatever it raises becomes one line.

archlint imports and runs the model's code: at import, in its constructor, in
``example_input`` and in every forward (input inference, tracing, probes, fake cost
runs, ``profile``). That code may raise anything, including what ``except Exception``
never sees: ``SystemExit`` (``sys.exit``, an ``argparse`` parser reading archlint's own
command line), ``KeyboardInterrupt`` raised by the model, ``GeneratorExit`` or a custom
``BaseException``. Each stage of the pipeline runs in :func:`stage`, which

- names the stage, so a timeout or a dead process can say where it happened
  (:mod:`archlint.sandbox` listens through :func:`on_stage`);
- turns a ``BaseException`` that is not an ``Exception`` into an :class:`ArchlintError`
  naming the stage and the user's ``file:line`` (an ``Exception`` is the stage's to
  handle: a tracer falls back, a cost run records why it failed);
- lets a real Ctrl-C through: while a guarded stage runs in the main thread, SIGINT is
  recorded before it becomes ``KeyboardInterrupt``, so the user stopping archlint is
  told apart from a model that raises ``KeyboardInterrupt`` itself.

Nothing here imports torch: the parent process of the command line uses it too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from functools import lru_cache

from archlint.errors import ArchlintError

_stages: list[str] = []
_listeners: list[Callable[[str], None]] = []
_interrupted = threading.Event()
_failure: list = [None, ""]                    # the last exception a stage let through, where


def failed_stage(exc: BaseException) -> str:
    """The innermost stage ``exc`` escaped from (``""``: none)."""
    return _failure[1] if _failure[0] is exc else ""


class StoppedByModel(ArchlintError):
    """The model's code exited, was interrupted or raised a BaseException: nothing else
    of this model can run (an input inference does not try the next layout)."""


def current_stage() -> str:
    """What archlint is doing now (``"importing model.py"``), or ``""``."""
    return _stages[-1] if _stages else ""


def on_stage(listener: Callable[[str], None]) -> None:
    """Call ``listener(name)`` whenever a stage begins (the child reports to its parent)."""
    _listeners.append(listener)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Run one stage of the pipeline under the guard (see the module docstring)."""
    _stages.append(name)
    for listener in _listeners:
        listener(name)
    try:
        with _sigint_recorded():
            yield
    except ArchlintError:
        raise
    except KeyboardInterrupt:
        if _interrupted.is_set():
            raise
        raise StoppedByModel(_message(name, "raised KeyboardInterrupt", _exc_info())) from None
    except Exception as exc:
        if _failure[0] is not exc:              # the innermost stage it escaped from
            _failure[:] = [exc, name]
        raise
    except BaseException as exc:  # noqa: B036 - SystemExit & co. from the user's code
        raise StoppedByModel(_message(name, _what_exited(exc), _exc_info())) from None
    finally:
        _stages.pop()
        if _listeners and _stages:
            for listener in _listeners:
                listener(_stages[-1])


def _exc_info() -> BaseException | None:
    import sys

    return sys.exc_info()[1]


def _message(name: str, what: str, exc: BaseException | None = None) -> str:
    location = user_location(exc.__traceback__) if exc is not None else None
    where = f" ({location})" if location else ""
    return f"{name}: the model's code {what}{where}; archlint needs it to return normally"


def _what_exited(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({safe_text(exc.code) if exc.code is not None else ''})"
    return f"raised {type(exc).__name__}" + (f": {safe_text(exc)}" if safe_text(exc) else "")


def safe_text(value: object, limit: int = 300) -> str:
    """``str(value)``, first line only (at most ``limit`` characters), even when
    ``__str__`` itself raises."""
    try:
        text = str(value)
    except Exception as error:  # noqa: BLE001 - a user object's __str__
        return f"<{type(value).__name__} whose str() raised {type(error).__name__}>"
    lines = text.strip().splitlines()
    return lines[0][:limit] if lines else ""


def describe(exc: BaseException, location: str | None = None) -> str:
    """``ValueError: bad size (model.py:12)``: the exception and the user line raising it."""
    message = safe_text(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    location = location or user_location(exc.__traceback__)
    return f"{text} ({location})" if location else text


def user_location(tb, innermost_only: bool = False) -> str | None:  # noqa: ANN001
    """``model.py:12``: the innermost frame of the traceback in the user's code.

    Frames of torch, archlint and the standard library are not the user's; frames of
    other installed packages count only when no frame of the user's own files does.
    ``innermost_only``: only when the exception was raised in such a frame itself (a
    user's ``raise``, not an error of archlint's that happened to be called from it).
    """
    frames = traceback.extract_tb(tb) if tb is not None else []
    if innermost_only:
        frames = frames[-1:]
    return innermost_user_frame([(f.filename, f.lineno) for f in frames])


def innermost_user_frame(frames: list[tuple[str, object]]) -> str | None:
    """``file:line`` of the last user frame of ``(filename, line)`` pairs, outermost first;
    the user's own files win over installed packages."""
    own = [f for f in frames if is_user_file(f[0]) and not _installed(f[0])]
    chosen = own or [f for f in frames if is_user_file(f[0])]
    if not chosen:
        return None
    return f"{shown_path(chosen[-1][0])}:{chosen[-1][1]}"


def is_user_file(filename: str) -> bool:
    """True for a file that is neither torch, archlint nor the standard library."""
    return not filename.startswith(_library_dirs()) and not filename.startswith("<")


def shown_path(filename: str) -> str:
    """A path relative to the working directory when under it, else absolute."""
    absolute = os.path.abspath(filename)
    cwd = os.getcwd() + os.sep
    return absolute[len(cwd):] if absolute.startswith(cwd) else absolute


def _installed(filename: str) -> bool:
    return f"{os.sep}site-packages{os.sep}" in filename or f"{os.sep}dist-packages{os.sep}" \
        in filename


@lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    dirs = [os.path.dirname(os.path.abspath(__file__)) + os.sep,
            os.path.dirname(contextlib.__file__) + os.sep]
    spec = importlib.util.find_spec("torch")          # where torch is, without importing it
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(os.path.abspath(p) + os.sep for p in spec.submodule_search_locations)
    return tuple(dirs)


@contextlib.contextmanager
def _sigint_recorded() -> Iterator[None]:
    """Mark a real SIGINT before Python turns it into KeyboardInterrupt (main thread,
    default handler only: a handler the caller installed is left alone)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return

    def interrupted(signum, frame):  # noqa: ANN001
        _interrupted.set()
        raise KeyboardInterrupt

    _interrupted.clear()
    signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
