"""Issue 2 target: `archlint check` on the 124M GPT-2-style decoder at n=1M.

Must hold: finishes in seconds, peak RSS under 1.5 GB, and the time at n=1M is within
20% of the time at n=1k (nothing archlint does may scale with the target length).
Each run is a fresh process (imports and model construction included, as a user sees
it); the figure per length is the median of REPEATS runs.

    python benchmarks/bench_check.py [extra archlint flags...]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

MODEL = "fixtures/gpt2_124m.py"
LENGTHS = ("1k", "1M")
REPEATS = 3
RSS_LIMIT_MB = 1536

CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
from archlint.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
      file=sys.stderr)
"""


def measure(length: str, extra: list[str]) -> dict:
    args = ["check", MODEL, "--seq-len", length, "--format", "json", *extra]
    runs = []
    for _ in range(REPEATS):
        done = subprocess.run([sys.executable, "-c", CHILD, *args],
                              capture_output=True, text=True, check=False)
        runs.append(json.loads(done.stderr.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs)}


def main() -> int:
    extra = sys.argv[1:]
    results = {length: measure(length, extra) for length in LENGTHS}
    print(f"archlint check {MODEL} {' '.join(extra)}")
    print(f"{'seq_len':>8} {'seconds':>8} {'peak RSS MB':>12}")
    for length, figures in results.items():
        print(f"{length:>8} {figures['seconds']:8.2f} {figures['rss_mb']:12.0f}")
    ratio = results["1M"]["seconds"] / results["1k"]["seconds"]
    rss = max(f["rss_mb"] for f in results.values())
    print(f"time(1M) / time(1k) = {ratio:.3f}  (must be within 0.8 .. 1.2)")
    print(f"peak RSS = {rss:.0f} MB  (must be < {RSS_LIMIT_MB} MB)")
    ok = 0.8 <= ratio <= 1.2 and rss < RSS_LIMIT_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
