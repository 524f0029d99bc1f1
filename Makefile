# Every target sets up its own virtualenv: torch==2.13.0 is installed FIRST and pinned,
# so nothing pulls a CUDA build; then archlint and its test extra.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.archlint-installed

.PHONY: setup example test test-models lint bench rules-docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## Run archlint on a bundled model (expects exit 1: it has findings).
example: $(STAMP)
	$(BIN)/archlint check fixtures/transformer_model.py --seq-len 4096 --memory 16GB --span 512 || [ $$? -eq 1 ]

## The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/ruff check archlint tests
	$(BIN)/pytest -q -m "not models"

## Third-party models built from their configs (transformers, pytorch-tcn).
test-models: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,models]'
	$(BIN)/pytest -q -m models

## Regenerate the rule catalog in rules/ from the rule docstrings.
rules-docs: $(STAMP)
	$(BIN)/python -m archlint.catalog

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
