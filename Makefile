PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench profile clean

$(BIN)/airudder-receiver: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/airudder-receiver
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/airudder-receiver
	$(BIN)/airudder-receiver serve

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Not part of test: takes about ten minutes and wants a quiet machine. BENCH_* variables shorten it.
bench: $(VENV)/.test-deps
	bash bench/setup.sh
	$(BIN)/python -m bench

$(VENV)/.bench-deps: $(VENV)/.test-deps
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# Where the receiver spends its time under wrk, sampled with py-spy.
profile: $(VENV)/.bench-deps
	bash bench/setup.sh
	$(BIN)/python -m bench.profile

clean:
	rm -rf $(VENV) build *.egg-info
