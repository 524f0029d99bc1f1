"""How much memory this process may still take: the machine's real limit, and RSS.

``MemAvailable`` alone is not the limit a process runs under. A container's cgroup
(``memory.max`` in cgroup v2, ``memory.limit_in_bytes`` in v1, the smallest over the
cgroup and its ancestors) and the process's own ulimits (``RLIMIT_AS`` against the
address space, ``RLIMIT_DATA`` against private writable memory) each stop it sooner
when set. :func:`memory_limit` reads every one that applies and returns the smallest
headroom: what ``archlint profile`` compares a prediction with before it runs a step,
and what :func:`cap_allocations` turns into an ``RLIMIT_DATA`` of the analysis child,
so that the model's own allocations beyond it (``np.zeros((n, n))`` run at the target
length) raise ``MemoryError`` in that process instead of waking the kernel's
out-of-memory killer.

Resident memory is read from ``/proc/self/status``: ``VmRSS`` now, ``VmHWM`` its peak,
which writing ``5`` to ``/proc/self/clear_refs`` resets (Linux 4.0+), so the peak of one
step is measured, allocations of numpy and Python included, not only torch's.

Nothing here imports torch: the parent process of the command line uses it too.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

try:
    import resource
except ImportError:                               # not on POSIX: no ulimits to read
    resource = None  # type: ignore[assignment]

#: a cgroup limit at or above this is "no limit" (v1 writes 2^63 rounded to a page)
_UNLIMITED = 2**62


@dataclass(frozen=True)
class MemoryLimit:
    """Bytes this process may still allocate under one limit, and which limit it is."""

    free: int
    source: str               # "MemAvailable", "cgroup memory.max", "RLIMIT_DATA", ...

    def __str__(self) -> str:
        from archlint.units import format_bytes

        return f"{format_bytes(self.free)} ({self.source})"


def memory_limit(proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> MemoryLimit:
    """The tightest of every limit that applies now (see the module docstring)."""
    return min(limits(proc, cgroup_root), key=lambda limit: limit.free)


def limits(proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> list[MemoryLimit]:
    """Every limit that applies to this process now, each as the headroom it leaves."""
    found = []
    available = _meminfo(proc).get("MemAvailable")
    if available is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if available is not None:
        found.append(MemoryLimit(max(0, available), "MemAvailable"))
    found.extend(_cgroup_limits(proc, cgroup_root))
    status = _status(proc)
    if resource is not None:
        for name, used in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
            soft, _ = resource.getrlimit(getattr(resource, name))
            if soft != resource.RLIM_INFINITY and used in status:
                found.append(MemoryLimit(max(0, soft - status[used]), name))
    if not found:                                  # nothing readable: say so, never "0"
        found.append(MemoryLimit(2**63 - 1, "unknown"))
    return found


def _cgroup_limits(proc: str, root: str) -> list[MemoryLimit]:
    """Headroom under the memory limit of this process's cgroup and each ancestor."""
    try:
        with open(os.path.join(proc, "self", "cgroup"), encoding="utf-8") as handle:
            entries = [line.rstrip("\n").split(":", 2) for line in handle]
    except OSError:
        return []
    found = []
    for entry in entries:
        if len(entry) != 3:
            continue
        _, controllers, path = entry
        if controllers == "":                                     # cgroup v2
            base, limit_file, usage_file, label = root, "memory.max", "memory.current", \
                "cgroup memory.max"
        elif "memory" in controllers.split(","):                  # cgroup v1
            base, limit_file, usage_file, label = os.path.join(root, "memory"), \
                "memory.limit_in_bytes", "memory.usage_in_bytes", "cgroup memory.limit_in_bytes"
        else:
            continue
        for folder in _ancestors(base, path):
            limit = _read_int(os.path.join(folder, limit_file))
            if limit is None or limit >= _UNLIMITED:
                continue
            used = _read_int(os.path.join(folder, usage_file)) or 0
            used -= _reclaimable(os.path.join(folder, "memory.stat"))
            found.append(MemoryLimit(max(0, limit - max(0, used)),
                                     f"{label} of {folder}"))
    return found


def _ancestors(base: str, path: str) -> list[str]:
    """``base/a/b``, ``base/a``, ``base`` (those that exist): a cgroup's own limit and
    its parents'. Inside a cgroup namespace the leaf is ``base`` itself."""
    parts = [p for p in path.split("/") if p]
    folders = [os.path.join(base, *parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [folder for folder in folders if os.path.isdir(folder)]


def _reclaimable(stat_file: str) -> int:
    """Inactive file cache the kernel reclaims before it kills (``memory.stat``)."""
    try:
        with open(stat_file, encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key in ("inactive_file", "total_inactive_file"):
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo(proc: str) -> dict[str, int]:
    return _kilobyte_fields(os.path.join(proc, "meminfo"))


def _status(proc: str) -> dict[str, int]:
    return _kilobyte_fields(os.path.join(proc, "self", "status"))


def _kilobyte_fields(path: str) -> dict[str, int]:
    """``Name:   123 kB`` lines as bytes."""
    fields = {}
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                match = re.match(r"(\w+):\s+(\d+) kB", line)
                if match:
                    fields[match[1]] = int(match[2]) * 1024
    except OSError:
        pass
    return fields


# ---------------------------------------------------------------- resident memory


def resident() -> int | None:
    """Bytes resident now (``VmRSS``), or None where /proc does not tell."""
    return _status("/proc").get("VmRSS")


def resident_now() -> int | None:
    """Bytes resident now from ``/proc/self/statm`` (cheaper than ``status``: polled)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_free_heap() -> None:
    """Give the C heap's free pages back to the kernel (glibc ``malloc_trim``): pages
    freed by earlier work and still resident would otherwise be reused by the step and
    hide its growth. A no-op where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        name = ctypes.util.find_library("c")
        if name:
            ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class ResidentSampler:
    """The largest resident size seen by a thread polling ``statm`` every ``interval``.

    ``VmHWM`` alone can miss a peak: the kernel folds the resident size into it lazily
    (at some unmaps), so a large array mapped, filled and unmapped between two updates
    may never reach it. Polling sees anything alive for longer than the interval."""

    def __init__(self, interval: float = 0.0005) -> None:
        import threading

        self.interval = interval
        self.peak = resident_now() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = resident_now()
            if now is not None and now > self.peak:
                self.peak = now

    def __enter__(self) -> ResidentSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        now = resident_now()
        if now is not None:
            self.peak = max(self.peak, now)


def reset_peak() -> bool:
    """Start a new resident peak (``VmHWM`` = ``VmRSS`` now); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_resident() -> int | None:
    """Largest resident size since the process started or :func:`reset_peak`."""
    return _status("/proc").get("VmHWM")


# ---------------------------------------------------------------- the child's cap

#: (the soft RLIMIT_DATA this module set, the one it replaced)
_own_soft: tuple[int, int] | None = None


def cap_allocations(proc: str = "/proc") -> int | None:
    """Lower this process's ``RLIMIT_DATA`` to what it holds plus the machine's headroom,
    so an allocation past the real limit fails here (``MemoryError``, torch's "can't
    allocate memory") instead of the kernel killing a process. Called in the analysis
    child at each stage (the headroom moves as the machine is used); returns the limit
    set, or None where no limit can be set. Never raises a hard limit."""
    if resource is None:
        return None
    global _own_soft
    data = _status(proc).get("VmData")
    if data is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if _own_soft is not None and soft == _own_soft[0]:    # our own cap: not a limit to
        with contextlib.suppress(ValueError, OSError):    # read, or it would only shrink
            resource.setrlimit(resource.RLIMIT_DATA, (_own_soft[1], hard))
    headroom = memory_limit(proc).free
    if headroom >= 2**62:
        return None
    cap = data + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    except (ValueError, OSError):
        return None
    _own_soft = (cap, _own_soft[1] if _own_soft is not None else soft)
    return cap


def is_out_of_memory(exc: BaseException) -> bool:
    """``MemoryError``, or torch's allocator refusing (``RuntimeError: ... can't allocate
    memory``, ``torch.OutOfMemoryError``)."""
    if isinstance(exc, MemoryError):
        return True
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc) if isinstance(exc, RuntimeError) else ""
    return "can't allocate memory" in text or "not enough memory" in text.lower()
