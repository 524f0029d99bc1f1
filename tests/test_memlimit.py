"""The machine's real memory limit: MemAvailable, cgroup v1/v2 and ulimits, the smallest
wins; and the analysis child's RLIMIT_DATA set from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from archlint import memlimit
from archlint.memlimit import MemoryLimit

GB = 10**9


def _proc(tmp_path: Path, cgroup: str, available_kb: int = 8_000_000) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 16000000 kB\nMemAvailable: {available_kb} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "status").write_text("VmSize:  2000000 kB\nVmData:  1000000 kB\n"
                                          "VmRSS:   500000 kB\n")
    return proc


def _write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_cgroup_v2_limit_below_memavailable_wins_with_its_usage_subtracted(tmp_path):
    proc = _proc(tmp_path, "0::/ci/job\n")
    root = tmp_path / "cg"
    _write(root, memory_max="max\n")
    _write(root / "ci", memory_max=f"{6 * GB}\n", memory_current=f"{1 * GB}\n")
    _write(root / "ci" / "job", memory_max="max\n", memory_current=f"{1 * GB}\n")
    (root / "ci" / "memory.stat").write_text(f"anon 1\ninactive_file {GB // 2}\n")
    limit = memlimit.memory_limit(str(proc), str(root))
    # 6 GB - (1 GB used - 0.5 GB reclaimable cache) = 5.5 GB < 8.192 GB MemAvailable
    assert limit == MemoryLimit(int(5.5 * GB), f"cgroup memory.max of {root / 'ci'}")


def test_cgroup_v1_limit_and_the_ancestors(tmp_path):
    proc = _proc(tmp_path, "4:memory:/a/b\n3:cpu:/a/b\n")
    base = tmp_path / "cg" / "memory"
    _write(base, memory_limit_in_bytes="9223372036854771712\n")
    _write(base / "a", memory_limit_in_bytes=f"{4 * GB}\n", memory_usage_in_bytes=f"{GB}\n")
    _write(base / "a" / "b", memory_limit_in_bytes=f"{5 * GB}\n",
           memory_usage_in_bytes=f"{GB}\n")
    found = memlimit.limits(str(proc), str(tmp_path / "cg"))
    assert MemoryLimit(3 * GB, f"cgroup memory.limit_in_bytes of {base / 'a'}") in found
    assert MemoryLimit(4 * GB, f"cgroup memory.limit_in_bytes of {base / 'a' / 'b'}") in found
    assert memlimit.memory_limit(str(proc), str(tmp_path / "cg")).free == 3 * GB


def test_without_a_cgroup_limit_memavailable_is_the_limit(tmp_path):
    proc = _proc(tmp_path, "0::/\n", available_kb=1_234_567)
    root = tmp_path / "cg"
    _write(root, memory_max="max\n")
    assert memlimit.memory_limit(str(proc), str(root)) == MemoryLimit(1_234_567 * 1024,
                                                                      "MemAvailable")


ULIMIT_SCRIPT = r"""
import json, re, resource, sys
from archlint import memlimit
data = int(re.search(r"VmData:\s+(\d+) kB", open("/proc/self/status").read())[1]) * 1024
resource.setrlimit(resource.RLIMIT_DATA, (data + 2 * 10**9, resource.RLIM_INFINITY))
limit = memlimit.memory_limit()
cap = memlimit.cap_allocations()
again = memlimit.cap_allocations()
try:
    bytearray(3 * 10**9)
    refused = False
except MemoryError:
    refused = True
print(json.dumps({"data": data, "free": limit.free, "source": limit.source, "cap": cap,
                  "again": again, "refused": refused}))
"""


def test_a_ulimit_is_a_limit_and_the_cap_makes_a_larger_allocation_raise():
    result = subprocess.run([sys.executable, "-c", ULIMIT_SCRIPT], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["source"] == "RLIMIT_DATA"
    assert abs(found["free"] - 2 * 10**9) < 64 * 2**20        # VmData grew a little since
    assert found["cap"] <= found["data"] + 2 * 10**9 + 64 * 2**20
    assert abs(found["again"] - found["cap"]) < 64 * 2**20     # re-capping does not shrink it
    assert found["refused"] is True


@pytest.mark.parametrize("error, expected", [
    (MemoryError(), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 34359738368 bytes."), True),
    (RuntimeError("shape mismatch"), False),
    (ValueError("can't allocate memory"), False),
])
def test_what_counts_as_out_of_memory(error, expected):
    assert memlimit.is_out_of_memory(error) is expected


def test_the_resident_sampler_sees_pages_that_lived_for_a_few_milliseconds():
    """The polled peak must see 100 MB of fresh anonymous pages written, kept 20 ms and
    unmapped (mmap: no heap memory of earlier tests can be reused for them)."""
    import mmap
    import time

    from archlint.memlimit import ResidentSampler, resident_now

    size, page = 100 * 10**6, mmap.PAGESIZE
    before = resident_now()
    with ResidentSampler() as sampler:
        region = mmap.mmap(-1, size)
        for offset in range(0, size, page):
            region[offset] = 1                           # every page written: resident
        time.sleep(0.02)
        region.close()
    assert before is not None and sampler.peak - before >= size - 2**20
