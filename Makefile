# advocase — the two commands of the quick start are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test bench bench-scale lint install clean

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

# Three pytest workers on two cores: about half of a worker's time goes waiting on
# subprocesses, servers, brokers and browsers, so a third keeps the cores busy.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

BENCHMARKS := tests.bench tests.bench.inprocess tests.bench.audit_verify tests.bench.crypto \
	tests.bench.clients tests.bench.evidence tests.bench.resources tests.bench.referrals \
	tests.bench.reminders tests.bench.incidents tests.bench.reports tests.bench.funder \
	tests.bench.floor

# Every benchmark runs even when an earlier one misses its target (exit 1) or fails;
# the list of those that did not pass comes last, and the exit status says so.
bench: $(STAMP)
	@missed=""; for module in $(BENCHMARKS); do \
		echo "== $$module"; \
		$(BIN)/python -m $$module || missed="$$missed $$module"; \
	done; \
	if [ -n "$$missed" ]; then echo "== missed a target or failed:$$missed"; exit 1; fi

# Not in BENCHMARKS: seeding 100,000 clients, 1,000,000 incidents and 200,000 evidence files
# and the mixed load take 10-15 minutes (docs/benchmarks.md, "Scale").
bench-scale: $(STAMP)
	$(BIN)/python -m tests.bench.scale all

lint: $(STAMP)
	$(BIN)/ruff check app workers migrations tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
