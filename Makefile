# The two commands a fresh machine needs: `make serve` and `make test`.
# Both create the virtualenv and install on first use; installs rerun only when
# pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 0.0.0.0
PORT   ?= 8000

.PHONY: install serve test train lint format clean bench bench-setup

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,dev]'
	@touch $@

serve: install
	$(BIN)/modelserve serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest

train: install
	$(BIN)/modelserve train all

# Benchmark against baselines (bench/README.md); not part of `make test`. Baseline venvs
# go to bench/.venvs/ on first use. Options: make bench BENCH_ARGS="--duration 5 --rounds 1"
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-setup: install
	$(BIN)/python bench/run.py --setup-only

lint: install
	$(BIN)/ruff check service training tests bench

format: install
	$(BIN)/ruff format service training tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
