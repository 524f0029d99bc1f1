"""Length limits of a model: what stops it from running at the target length.

Two sources, each read by its rule:

- positional tables shorter than n (:func:`short_tables`, AL106): learned tables with
  their index offset, fixed sin/cos buffers, sliced constant tables (see
  :mod:`archlint.classify.positions`);
- the model's own checks, met when the cost analysis runs one step on fake tensors at
  n (:func:`step_failures`, AL110): ``ValueError: Sequence Length: 4096 has to be less
  or equal than config.max_position_embeddings 2048`` (Reformer), or a shape mismatch
  a table caused (``Attempting to broadcast a dimension of length 2048``, MPT).

A failure that comes from fake tensors themselves (data-dependent output sizes,
operators without a fake kernel) or from archlint's trackers says nothing about the
model, and is left to the cost section's notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archlint.graph import Layer, ModelGraph
from archlint.kinds import LayerKind

if TYPE_CHECKING:
    from archlint.report import Report

#: how :mod:`archlint.cost.predict` words a failed step
_FAILED = re.compile(r"failed on fake tensors at n=(?P<n>\d+): (?P<type>[\w.]+): (?P<words>.*)",
                     re.DOTALL)
#: exceptions a model raises when it checks its input
_CHECKS = {"ValueError", "AssertionError", "IndexError"}
#: RuntimeError texts of a shape that does not fit (broadcast, expand, view, cat, matmul)
_SHAPES = re.compile(r"broadcast|expanded size|must match|shape|size of tensor|"
                     r"out of (range|bounds)|invalid for input of size", re.IGNORECASE)
#: texts of fake-tensor and tracker limitations, not of the model
_TOOLING = re.compile(r"fake|meta tensor|data.dependent|symbolic|storage|register a hook|"
                      r"not implemented|nothing to train", re.IGNORECASE)


@dataclass(frozen=True)
class StepFailure:
    """One step of the model that failed at one length, in the exception's own words."""

    seq_len: int
    exception: str                  # "ValueError"
    words: str                      # the exception's message

    def __str__(self) -> str:
        return f"{self.exception}: {self.words}"


def step_failures(report: Report) -> list[StepFailure]:
    """The lengths at which the model's own checks stopped the fake step, shortest first."""
    cost = report.cost
    failures = getattr(cost, "failures", None) or {}
    found = []
    for seq_len, reason in sorted(failures.items()):
        match = _FAILED.search(reason)
        if match is None:
            continue
        failure = StepFailure(seq_len, match["type"].rpartition(".")[2],
                              " ".join(match["words"].split()))
        if _from_the_model(failure):
            found.append(failure)
    return found


def _from_the_model(failure: StepFailure) -> bool:
    if _TOOLING.search(failure.words):
        return False
    if failure.exception in _CHECKS:
        return True
    return failure.exception == "RuntimeError" and bool(_SHAPES.search(failure.words))


def short_tables(graph: ModelGraph, seq_len: int) -> list[Layer]:
    """Positional tables that hold fewer than ``seq_len`` positions."""
    return [layer for layer in graph.layers_of(LayerKind.POSITIONAL)
            if layer.params.get("max_len") is not None and layer.params["max_len"] < seq_len]
