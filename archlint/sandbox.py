"""The analysis runs in a child process: the model's code cannot take archlint down.

``archlint check`` validates every flag and the configuration in the parent (no torch
imported: a typo answers at once), then forks. The child imports torch and the model,
runs the pipeline and sends the rendered report back through a pipe; the parent prints
it and sets the exit code. Forking before torch is imported is cheap and safe, and it
survives what no ``try`` can catch:

- ``os._exit``, a crash (SIGSEGV, SIGABRT), the kernel's out-of-memory kill: the child
  dies without a result, and the parent says so in one line naming the stage (exit 2;
  never a silent exit 0);
- a model that sleeps or loops forever: the parent enforces the timeout of each model,
  asks the child where it is (``faulthandler`` dumps its stack on SIGUSR1, even inside
  a C call), names the stage and the user's ``file:line``, and kills the child's process
  group;
- ``print()`` in the model, or a model that replaces ``sys.stdout``: the child's fd 1 is
  its stderr, so the report (``--format json/sarif``) is never mixed with it;
- an allocation past the machine's real limit (cgroup, ulimit, ``MemAvailable``): the
  child's ``RLIMIT_DATA`` is that limit, re-read at every stage
  (:func:`archlint.memlimit.cap_allocations`), so the allocation fails in the child with
  ``MemoryError`` (one line naming the stage) before the kernel's OOM killer would
  choose a process to kill.

The child leads its own process group, so a Ctrl-C at the terminal reaches only the
parent, which kills the child and exits 130: a ``KeyboardInterrupt`` inside the child
always came from the model. Its stdin is ``/dev/null`` (an ``input()`` in the model
fails instead of stopping a background process).

When the parent already imported torch and used its thread pool (a test calling the
CLI in-process), the forked child's OpenMP pool would deadlock on first use, so the
child then computes on one thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from archlint import guard, memlimit
from archlint.errors import ArchlintError

#: seconds the child may take to import torch and archlint before the first model
_STARTUP = 120.0
#: seconds the parent waits for the stack dump of a child that ran out of time
_DUMP_WAIT = 1.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Outcome:
    """What the child produced: the report text and exit code, or one error line."""

    text: str = ""
    code: int = 0
    error: str | None = None
    debug: str | None = None          # the traceback, with --debug
    deps: dict[str, str] | None = None  # the user's files the run imported (for the cache)


class Interrupted(Exception):
    """The user stopped archlint (Ctrl-C, SIGTERM, SIGHUP); ``signum`` says how."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Reporter:
    """The child's end of the pipe: stage changes, stderr text, and the outcome."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, **message: object) -> None:
        data = (json.dumps(message) + "\n").encode()
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(self.fd, data):]

    def target(self, name: str) -> None:
        """A new model begins: its timeout starts now."""
        self.send(target=name)


def run_isolated(work: Callable[[Reporter], tuple[str, int]], timeout: float,
                 debug: bool = False) -> Outcome:
    """Run ``work`` in a child; return its outcome, or an error line for a child that
    died, hung past ``timeout`` seconds (per model) or was interrupted."""
    torch_loaded = "torch" in sys.modules
    if torch_loaded:        # torch is paid for already (a test, the API): children start warm
        import archlint.api  # noqa: F401
        import archlint.format  # noqa: F401
        import archlint.profile  # noqa: F401
    messages_r, messages_w = os.pipe()
    dump_r, dump_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:                                            # the child never returns
        os.close(messages_r)
        os.close(dump_r)
        _child(work, Reporter(messages_w), dump_w, torch_loaded, debug)
    os.close(messages_w)
    os.close(dump_w)
    with contextlib.suppress(OSError):                      # the child does it too: no race
        os.setpgid(pid, pid)
    try:
        with _termination_raises():
            return _watch(pid, messages_r, dump_r, timeout)
    except (Interrupted, KeyboardInterrupt):
        _kill(pid)
        raise
    finally:
        os.close(messages_r)
        os.close(dump_r)


def _child(work: Callable[[Reporter], tuple[str, int]], reporter: Reporter, dump_fd: int,
           torch_loaded: bool, debug: bool) -> None:
    exit_now = os._exit
    try:
        os.setpgid(0, 0)
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _quiet_streams(reporter)
        import faulthandler

        dump = os.fdopen(dump_fd, "w")
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=False)
        faulthandler.enable(file=dump, all_threads=False)      # a crash names its line too
        if torch_loaded:
            import torch

            torch.set_num_threads(1)
        guard.on_stage(lambda name: _stage_begins(reporter, name))
        memlimit.cap_allocations()
        reporter.send(stage="starting the analysis (importing torch)")
        os._exit = _reporting_exit(reporter, exit_now)
        try:
            text, code = work(reporter)
            reporter.send(text=text, code=code)
        except ArchlintError as exc:
            # archlint's own line: long enough for the user's error it quotes
            reporter.send(error=guard.safe_text(exc, limit=1000),
                          debug=traceback.format_exc() if debug else None)
        except BaseException as exc:  # noqa: B036 - nothing may escape the child
            reporter.send(error=_unexpected(exc),
                          debug=traceback.format_exc() if debug else None)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
    finally:
        exit_now(0)


def _stage_begins(reporter: Reporter, name: str) -> None:
    """Tell the parent where the child is, and re-read the machine's memory headroom."""
    reporter.send(stage=name)
    memlimit.cap_allocations()


def _unexpected(exc: BaseException) -> str:
    """One line for an exception no stage handled: the model's, or a bug of archlint's."""
    where = guard.failed_stage(exc) or guard.current_stage() or "running archlint"
    if memlimit.is_out_of_memory(exc):
        return (f"{where}: out of memory ({guard.describe(exc)}) under the "
                f"{memlimit.memory_limit()} this machine allows")
    location = guard.user_location(exc.__traceback__, innermost_only=True)
    if location is not None:
        return f"{where}: the model's code raised {guard.describe(exc, location)}"
    return (f"internal error while {where}: {guard.describe(exc)}; rerun with --debug "
            "and report it")


def _reporting_exit(reporter: Reporter, exit_now: Callable[[int], None]) -> Callable:
    """``os._exit`` as the model's code sees it: say who called it, then exit."""
    def reporting_exit(status: int) -> None:
        caller = sys._getframe(1)
        location = f" ({guard.shown_path(caller.f_code.co_filename)}:{caller.f_lineno})"
        stage = guard.current_stage() or "running the model"
        reporter.send(error=f"{stage}: the model's code called os._exit({status}){location}; "
                            "archlint needs it to return normally")
        exit_now(status)
    return reporting_exit


def _quiet_streams(reporter: Reporter) -> None:
    """fd 1 and ``sys.stdout`` go to stderr; stdin reads nothing. Where stderr is not a
    real file (a test runner capturing it), its text travels through the pipe."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:
        sys.stderr = _PipeStream(reporter)
    # a stream of its own: a model closing sys.stdout does not close archlint's stderr
    sys.stdout = _PipeStream(reporter) if not real else open(  # noqa: SIM115
        1, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)


class _PipeStream(io.TextIOBase):
    """A text stream whose writes reach the parent's ``sys.stderr`` (closing it is a
    no-op: the model's ``sys.stdout.close()`` must not silence archlint)."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter

    def write(self, text: str) -> int:
        if text:
            self.reporter.send(stderr=text)
        return len(text)

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _die_with_parent() -> None:
    """Linux: the child is killed when the parent dies (kill -9 of archlint)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# ---------------------------------------------------------------- the parent's side


def _watch(pid: int, messages: int, dump: int, timeout: float) -> Outcome:
    buffer = b""
    stage, target = "starting", ""
    # importing torch and archlint is not the model's time: its own allowance, and each
    # model's timeout starts when that model does (the ``target`` message)
    deadline = time.monotonic() + max(timeout, _STARTUP)
    outcome: Outcome | None = None
    deps: dict[str, str] | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            where = _dumped_location(pid, dump)
            _kill(pid)
            label = f"{target}: " if target else ""
            return Outcome(error=f"{label}{stage} did not finish within {_seconds(timeout)}"
                                 f"{where}; the model may hang there, or raise --timeout")
        ready, _, _ = select.select([messages], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(messages, 1 << 16)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "target" in message:
                target = message["target"]
                deadline = time.monotonic() + timeout
            if "stage" in message:
                stage = message["stage"]
            if "stderr" in message:
                sys.stderr.write(message["stderr"])
            if "error" in message and outcome is None:
                outcome = Outcome(error=message["error"], debug=message.get("debug"))
            if "deps" in message:
                deps = message["deps"]
            if "text" in message and outcome is None:
                outcome = Outcome(text=message["text"], code=message["code"], deps=deps)
    status = _reap(pid)
    if outcome is not None:
        return outcome
    label = f"{target}: " if target else ""
    where = _location_in(_read_all(dump)) if os.WIFSIGNALED(status) else ""
    return Outcome(error=f"{label}{stage}: the analysis process ended without a result "
                         f"({_status_text(status)}){where}; run with --debug, or check what "
                         "the model's code does there")


def _dumped_location(pid: int, dump: int) -> str:
    """`` (at model.py:12)``: the innermost user frame of the child's stack, if it tells."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGUSR1)
    text = b""
    end = time.monotonic() + _DUMP_WAIT
    while time.monotonic() < end:
        ready, _, _ = select.select([dump], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        chunk = os.read(dump, 1 << 16)
        if not chunk:
            break
        text += chunk
        if b"\n\n" in text or text.count(b"\n") > 200:
            break
    return _location_in(text)


def _read_all(fd: int) -> bytes:
    """What a dead child left in the dump pipe (its write end is closed: no wait)."""
    text = b""
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        text += chunk
    return text


def _location_in(dump: bytes) -> str:
    """`` (at model.py:12)`` from a faulthandler dump (most recent call first)."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', dump.decode(errors="replace"))
    location = guard.innermost_user_frame(frames[::-1])
    return f" (at {location})" if location else ""


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> int:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ \
            else str(number)
        hint = ", perhaps out of memory" if number == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


@contextlib.contextmanager
def _termination_raises():
    """SIGTERM and SIGHUP stop the parent the way Ctrl-C does: the child dies with it."""
    def terminated(signum, frame):  # noqa: ANN001
        raise Interrupted(signum)

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):              # not the main thread
            previous[signum] = signal.signal(signum, terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
