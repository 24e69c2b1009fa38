# advocase — the two commands of the quick start are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test bench lint install clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "advocase needs Python 3.11 or newer (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the package definition changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/advocase dev --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m tests.bench
	$(BIN)/python -m tests.bench.inprocess
	$(BIN)/python -m tests.bench.audit_verify
	$(BIN)/python -m tests.bench.crypto
	$(BIN)/python -m tests.bench.clients
	$(BIN)/python -m tests.bench.evidence
	$(BIN)/python -m tests.bench.resources
	$(BIN)/python -m tests.bench.referrals
	$(BIN)/python -m tests.bench.reminders
	$(BIN)/python -m tests.bench.incidents
	$(BIN)/python -m tests.bench.reports

lint: $(STAMP)
	$(BIN)/ruff check app workers migrations tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
