"""Every fixture's layers are classified as its ``# expect:`` annotations say, at the
annotated source line (construction line for modules, call line for functional ops)."""

from __future__ import annotations

import re

import pytest
from conftest import FIXTURES, fixture_files, traced

from archlint.graph import _short

_EXPECT = re.compile(r"#\s*expect:\s*(\w+)((?:\s+\w+=\S+)*)")


def expectations(path: str) -> list[tuple[int, str, dict[str, str]]]:
    found = []
    for number, line in enumerate((FIXTURES.parent / path).read_text().splitlines(), 1):
        match = _EXPECT.search(line)
        if match:
            params = dict(item.split("=", 1) for item in match.group(2).split())
            found.append((number, match.group(1), params))
    return found


def _matches(actual, expected: str) -> bool:
    """``kernel_size=3`` matches 3, (3,) and (3, 3): one number for every axis."""
    if isinstance(actual, tuple) and actual and len(set(actual)) == 1:
        actual = actual[0]
    return _short(actual) == expected


SMALL = [f for f in fixture_files() if "124m" not in f]


@pytest.mark.parametrize("path", SMALL)
def test_annotated_layers_are_classified_at_their_line(path):
    graph = traced(path)
    expected = expectations(path)
    assert expected, f"{path} has no # expect: annotations"
    for line, kind, params in expected:
        at_line = [layer for layer in graph.layers
                   if layer.location is not None and layer.location.line == line
                   and layer.location.file == path]
        assert at_line, f"{path}:{line}: no layer located here; layers: " + ", ".join(
            f"{layer.name}@{layer.location}" for layer in graph.layers)
        matching = [layer for layer in at_line if layer.kind.value == kind]
        assert matching, f"{path}:{line}: expected {kind}, got " + ", ".join(
            f"{layer.name}={layer.kind.value}" for layer in at_line)
        for key, value in params.items():
            assert any(_matches(layer.params.get(key), value) for layer in matching), (
                f"{path}:{line}: {kind} {key}={value} expected, got "
                + "; ".join(layer.describe() for layer in matching))


@pytest.mark.parametrize("path", SMALL)
def test_every_sequence_mixer_is_annotated(path):
    """No position-mixing layer appears that the fixture author did not expect."""
    graph = traced(path)
    annotated = {line for line, _, _ in expectations(path)}
    for layer in graph.layers:
        if layer.kind.mixes_positions and layer.location and layer.location.file == path:
            assert layer.location.line in annotated, (
                f"unexpected {layer.kind.value} layer {layer.name} at {layer.location}")


def test_nothing_unattributed_in_fixtures():
    """Every op in the fixtures has a handler or is known to be pointwise/structural."""
    leftovers = {path: traced(path).unattributed for path in SMALL}
    assert {p: u for p, u in leftovers.items() if u} == {}
