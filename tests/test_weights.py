"""Building the model costs no more memory than needed: large weights whose values no
stage reads are never written, and weights that would not fit are never built; the
analysis of such a model is the same, figure for figure, as of its small-vocab twin.

``tests/hostile/huge_vocab.py:Model`` is ``nn.Embedding(10**8, 8)`` + ``nn.Linear(8, 8)``:
3.2 GB of float32 weights. Each check runs archlint as a real process under a fresh
interpreter, which reports the largest resident size of its descendants
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``): the parent and the analysis child.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

HUGE = "tests/hostile/huge_vocab.py"
WEIGHT_BYTES = 10**8 * 8 * 4                  # the embedding table, float32
LINEAR_BYTES = (8 * 8 + 8) * 4

MEASURED = r"""
import json, resource, subprocess, sys
limit = json.loads(sys.argv[1])
def cap():
    if limit:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
done = subprocess.run([sys.executable, "-m", "archlint", *sys.argv[2:]], capture_output=True,
                      text=True, preexec_fn=cap)
print(json.dumps({"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "max_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


def measured_check(target: str, *flags: str, data_limit: int | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", MEASURED, json.dumps(data_limit), "check", target,
         "--seq-len", "1k", "--mode", "infer", "--isolated", "--format", "json", *flags],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["code"] == 0, run["stderr"]
    assert "Traceback" not in run["stderr"]
    run["report"] = json.loads(run["stdout"])["reports"][0]
    return run


def figures(report: dict) -> dict:
    (entry,) = report["cost"]["lengths"]
    return {"memory": entry["memory"], "flops": entry["flops"], "peak": entry["peak_bytes"]}


def test_huge_embedding_checked_without_probes_never_writes_its_weights():
    huge = measured_check(f"{HUGE}:Model", "--no-dynamic")
    small = measured_check(f"{HUGE}:SmallVocab", "--no-dynamic")
    assert huge["max_rss"] < WEIGHT_BYTES / 3, huge["max_rss"]
    assert huge["report"]["model"]["parameters"] == 10**8 * 8 + 8 * 8 + 8
    got, twin = figures(huge["report"]), figures(small["report"])
    # parameters by hand; every other figure is the 1000-row twin's: an embedding
    # lookup's cost does not depend on the table's length
    assert got["memory"]["parameters"] == WEIGHT_BYTES + LINEAR_BYTES
    assert twin["memory"]["parameters"] == 1000 * 8 * 4 + LINEAR_BYTES
    assert got["peak"] - twin["peak"] == (10**8 - 1000) * 8 * 4
    assert got["flops"] == twin["flops"]
    assert {k: v for k, v in got["memory"].items() if k != "parameters"} == \
        {k: v for k, v in twin["memory"].items() if k != "parameters"}
    assert "weights not built for real, no stage reads their values (the probes are off): " \
           "embed.weight (3.2 GB)" in huge["report"]["reach"]["notes"]


def test_weights_that_would_not_fit_are_not_built_and_the_probes_say_so():
    """Under a 5 GB RLIMIT_DATA the 3.2 GB table is more than half the headroom: it stays
    unwritten, the probes are skipped with a note, and the run still exits 0."""
    huge = measured_check(f"{HUGE}:Model", data_limit=5 * 10**9)
    small = measured_check(f"{HUGE}:SmallVocab")
    assert huge["max_rss"] < WEIGHT_BYTES / 3, huge["max_rss"]
    reach = huge["report"]["reach"]
    assert reach["probe"] is None
    notes = [note for note in reach["notes"] if note.startswith("gradient probes skipped")]
    assert len(notes) == 1, reach["notes"]
    assert notes[0].startswith("gradient probes skipped: weights not built for real, their "
                               "values would not fit: 50% of the ")
    assert notes[0].endswith("(RLIMIT_DATA) this machine allows: embed.weight (3.2 GB); "
                             "static results only")
    assert small["report"]["reach"]["probe"] is not None          # the twin was probed
    got, twin = figures(huge["report"]), figures(small["report"])
    assert got["flops"] == twin["flops"]
    assert got["peak"] - twin["peak"] == (10**8 - 1000) * 8 * 4


def test_weights_that_fit_are_built_for_real_and_probed():
    """320 MB fits this machine: built as the model's code says, and the probes run."""
    mid = measured_check(f"{HUGE}:MidVocab")
    assert mid["report"]["reach"]["probe"] is not None
    assert not [n for n in mid["report"]["reach"]["notes"] if "not built" in n]
    assert mid["max_rss"] > 10**7 * 8 * 4                         # written, so resident
