PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint system-packages bench profile clean

# make run installs the package itself, not an editable link to this folder: that build is the one
# setuptools makes without warnings. Any change to what is installed installs it again: the packages are
# read from pyproject.toml's include list, so a new package cannot be left out here.
PACKAGES := $(shell sed -n 's/^include = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '"*,')
SOURCES := pyproject.toml server.py $(shell find $(PACKAGES) -type f -not -path '*/__pycache__/*')

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(BIN)/airudder-receiver: $(SOURCES) | $(BIN)/python
	$(BIN)/pip install --quiet .
	touch $@

# The tests start the installed command as a user would, so they need it to follow the code as it is
# edited: an editable install.
$(VENV)/.test-deps: $(BIN)/airudder-receiver
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# make run PORT=9000: another port without editing the tracked config.toml.
run: $(BIN)/airudder-receiver
	$(BIN)/airudder-receiver serve $(if $(PORT),--port $(PORT))

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The Debian packages in tests/debian-packages.txt come first, before .venv is made (python3-venv may be one
# of them). As a second prerequisite beside lint, make -j could start them together; so test depends on the
# check alone and runs lint from its recipe. make run does not need them.
test: system-packages
	@$(MAKE) --no-print-directory lint
	$(BIN)/pytest -m "not serial"
	$(BIN)/pytest -m serial -n 0

# Installs the missing ones as root; otherwise names the apt-get command to run, and stops.
system-packages:
	bash tests/install-debian-packages.sh

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
