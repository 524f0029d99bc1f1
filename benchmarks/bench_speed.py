"""Issue 11: what a check costs against the floor of importing torch, measured in one run.

Prints, each as a ratio to the floor (`python -c "import torch"`, wall seconds, median of
REPEATS fresh processes, measured in this same run so machine load cancels out):

- the small fixture (`fixtures/transformer_model.py` at 4096), analyzed afresh;
- each stage's share of one fresh check (from archlint's own stage markers);
- the 124M decoder (`fixtures/gpt2_124m.py`) at n=1k and n=1M, with peak RSS;
- the cached re-run of an unchanged model (same source, same settings);
- fvcore's `FlopCountAnalysis` and torchinfo's `summary` on the same models (n=1k; the
  small fixture at 512, the length of its position table)
  (their own fresh process, import of torch included), where they are installed.

Targets (issue 11): small fixture <= 2x, 124M <= 3x with RSS <= 1.0 GB and 1M within 10%
of 1k, cached <= 1.3x. The script prints PASS/FAIL per target and exits 0 either way
when it could measure (the figures are the result; CI does not time anything).

    python benchmarks/bench_speed.py [--repeats 3] [--skip-124m]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ("fixtures/transformer_model.py", "4096")
BIG = "fixtures/gpt2_124m.py"

TIMED = r"""
import json, resource, sys, time
start = time.perf_counter()
from archlint.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps({"seconds": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}),
      file=sys.stderr)
"""

STAGES = r"""
import json, re, sys, time
from archlint import guard
marks = []
guard.on_stage(lambda name: marks.append((time.perf_counter(), name)))
start = time.perf_counter()
marks.append((start, "importing torch and archlint"))
import torch  # noqa: F401
from archlint.session import CheckSession
marks.append((time.perf_counter(), "importing archlint's pipeline"))
CheckSession(overrides={"seq_len": sys.argv[2]}).analyze(sys.argv[1])
end = time.perf_counter()
shares = {}
for (at, name), (after, _) in zip(marks, marks[1:] + [(end, "")]):
    key = re.sub(r" (of|on|at n=) .*", "", name)
    key = "tracing" if key.startswith("tracing ") else key
    key = "importing the model file" if key.startswith("importing fixtures") else key
    shares[key] = shares.get(key, 0.0) + after - at
print(json.dumps({"total": end - start, "shares": shares}))
"""

THIRD_PARTY = r"""
import sys, time, warnings
start = time.perf_counter()
import torch
sys.path.insert(0, sys.argv[1])
from archlint.load import load_target
from archlint.cost.fake import make_inputs
loaded = load_target(sys.argv[3])
args, kwargs = make_inputs(loaded.input_spec, int(sys.argv[4]), 1)
warnings.simplefilter("ignore")
if sys.argv[2] == "fvcore":
    from fvcore.nn import FlopCountAnalysis
    analysis = FlopCountAnalysis(loaded.module, tuple(args))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.total()
else:
    import torchinfo
    torchinfo.summary(loaded.module, input_data=list(args), verbose=0)
print(time.perf_counter() - start)
"""


def _env(cache_home: str, cache: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ARCHLINT_NO_CACHE"}
    env["XDG_CACHE_HOME"] = cache_home
    if not cache:
        env["ARCHLINT_NO_CACHE"] = "1"
    return env


def _wall(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def floor(repeats: int) -> float:
    return statistics.median(_wall([sys.executable, "-c", "import torch"])
                             for _ in range(repeats))


def check(target: str, length: str, env: dict[str, str], repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", TIMED, "check", target, "--seq-len",
                               length, "--format", "json"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        figures = json.loads(done.stderr.strip().splitlines()[-1])
        runs.append({"seconds": wall, "rss_mb": figures["rss_mb"]})
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "rss_mb": max(r["rss_mb"] for r in runs)}


def stage_shares(target: str, length: str) -> dict:
    done = subprocess.run([sys.executable, "-c", STAGES, target, length], cwd=ROOT,
                          capture_output=True, text=True, check=True,
                          env=_env(tempfile.gettempdir(), cache=False))
    return json.loads(done.stdout.strip().splitlines()[-1])


def third_party(tool: str, target: str, length: str) -> float | None:
    done = subprocess.run([sys.executable, "-c", THIRD_PARTY, ROOT, tool, target, length],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return float(done.stdout.strip().splitlines()[-1])


def _row(label: str, seconds: float, base: float, extra: str = "") -> None:
    print(f"  {label:<44} {seconds:7.2f} s  {seconds / base:6.2f}x floor  {extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-124m", action="store_true")
    options = parser.parse_args()
    cache_home = tempfile.mkdtemp(prefix="archlint-bench-cache-")
    fresh, cached = _env(cache_home, cache=False), _env(cache_home, cache=True)
    print(f"machine load (1 min): {os.getloadavg()[0]:.2f}")
    base = floor(options.repeats)
    print(f"floor: python -c 'import torch' = {base:.2f} s (median of {options.repeats})")
    verdicts = []

    small = check(*SMALL, fresh, options.repeats)
    _row(f"check {SMALL[0]} n={SMALL[1]}", small["seconds"], base,
         f"RSS {small['rss_mb']:.0f} MB")
    verdicts.append(("small fixture <= 2x", small["seconds"] / base <= 2.0))
    shares = stage_shares(*SMALL)
    print(f"  stages of one check of {SMALL[0]} ({shares['total']:.2f} s in-process):")
    for name, seconds in sorted(shares["shares"].items(), key=lambda item: -item[1]):
        print(f"    {name:<52} {100 * seconds / shares['total']:5.1f} %")

    check(*SMALL, cached, 1)                                  # writes the entry
    again = check(*SMALL, cached, options.repeats)
    _row("  ... again, unchanged (cache)", again["seconds"], base)
    verdicts.append(("cached re-run <= 1.3x", again["seconds"] / base <= 1.3))

    if not options.skip_124m:
        big = {length: check(BIG, length, fresh, options.repeats) for length in ("1k", "1M")}
        for length, figures in big.items():
            _row(f"check {BIG} n={length}", figures["seconds"], base,
                 f"RSS {figures['rss_mb']:.0f} MB")
        ratio = big["1M"]["seconds"] / big["1k"]["seconds"]
        print(f"  time(1M) / time(1k) = {ratio:.3f}")
        verdicts.append(("124M <= 3x", max(f["seconds"] for f in big.values()) / base <= 3))
        verdicts.append(("124M RSS <= 1.0 GB",
                         max(f["rss_mb"] for f in big.values()) <= 1024))
        verdicts.append(("124M n=1M within 10% of n=1k", abs(ratio - 1) <= 0.10))
        check(BIG, "1k", cached, 1)
        big_again = check(BIG, "1k", cached, options.repeats)
        _row("  ... again, unchanged (cache)", big_again["seconds"], base)

    print("others, fresh process, same models (the small fixture at its table's 512):")
    for tool in ("fvcore", "torchinfo"):
        for target, length in ((SMALL[0], "512"),) + (() if options.skip_124m
                                                       else ((BIG, "1024"),)):
            seconds = third_party(tool, target, length)
            if seconds is None:
                print(f"  {tool} on {target}: could not run")
            else:
                _row(f"{tool} {target} n={length}", seconds, base)
    for name, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
