# Gavel — `make demo` and `make test` work on a fresh machine: they build the venv,
# install system packages when missing (as root) and start the local stack themselves.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: help venv system-deps lint format test test-unit demo stack-up stack-down stack-status bench clean

help:  ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create .venv and install Gavel with its dev tools

system-deps:  ## install redis-server and prometheus from apt when missing (as root)
	@deploy/local/install-system-deps.sh

lint: venv  ## ruff lint and format check, mypy type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv system-deps lint  ## set up and run every test against the real local stack
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv  ## only the pure-logic tests (no servers)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

demo: venv system-deps  ## stack → first model → streaming → drift → retrain → swap, narrated
	$(BIN)/gavel demo

stack-up: venv system-deps  ## start Kafka, Redis and MLflow under .stack/
	$(BIN)/gavel stack up

stack-down: venv  ## stop the local stack
	$(BIN)/gavel stack down

stack-status: venv
	$(BIN)/gavel stack status

bench: venv system-deps  ## run the benchmarks (results under bench/results/)
	$(BIN)/python bench/bench_stream.py

clean:  ## remove the venv and all local-stack state
	-$(BIN)/gavel stack down
	rm -rf $(VENV) .stack reports
