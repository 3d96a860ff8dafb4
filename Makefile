# nightlights: `make all` reproduces the analysis, `make test` checks the code.
# Every target installs what it needs first, so each works as the first command on a fresh machine.

#################################################################################
# GLOBALS                                                                       #
#################################################################################
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= outputs
SOURCE ?= auto

.DEFAULT_GOAL := help

#################################################################################
# COMMANDS                                                                      #
#################################################################################

## Create .venv and install the project with its test extras (idempotent)
install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## Run the whole analysis into outputs/ (real data when credentials are configured, else the labelled synthetic demo)
all: $(STAMP)
	$(BIN)/nightlights run --source $(SOURCE) --out $(OUT)

## Run the test suite on every core (pytest-xdist), the linter, the format check and the type checker
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadgroup
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy

## Everything but the slow end-to-end tests, on every core, with the linter and the type checker
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n auto --dist loadgroup
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy

## Type-check the package (mypy, settings in pyproject.toml)
typecheck: $(STAMP)
	$(BIN)/mypy

## Lint and format check only (`make format` applies the formatter)
lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench

## Apply the formatter (ruff format) and the linter's safe fixes
format: $(STAMP)
	$(BIN)/ruff format pipeline tests bench
	$(BIN)/ruff check --fix pipeline tests bench

## Benchmark extraction against exactextract, rasterstats, rioxarray and the decode floor (writes outputs/bench/)
bench: $(STAMP)
	$(BIN)/python -m bench.run

## Time the runs a user repeats (identical re-run, another --threshold, figures warm and cold) against Python's import time (writes outputs/bench/rerun.md)
bench-rerun: $(STAMP)
	$(BIN)/python -m bench.rerun --charts

## Install Debian's headless chromium for the browser tests of report.html and explore.html (needs root and apt)
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

## Remove the virtualenv, caches and generated outputs (keeps downloaded data under data/)
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find $(OUT) -mindepth 1 ! -name README.md -exec rm -rf {} + 2>/dev/null || true
	rm -rf data/demo data/cache

## Show this help
help:
	@if [ -t 1 ]; then c='\033[36m'; r='\033[0m'; else c=''; r=''; fi; \
	awk -v c="$$c" -v r="$$r" '/^## /{doc=substr($$0,4); next} /^[a-zA-Z_-]+:/{ if (doc) { split($$0,t,":"); printf "  %s%-10s%s %s\n", c, t[1], r, doc }; doc="" }' $(MAKEFILE_LIST)

.PHONY: install all test test-fast typecheck lint format bench bench-rerun browser clean help
