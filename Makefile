# geoclim — `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export MPLBACKEND := Agg
export WANDB_MODE ?= offline
export PYTHONHASHSEED := 0

.PHONY: help install hooks demo test test-all lint format smoke bench clean-logs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,serve]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv (if missing) and install geoclim with its dev extras

hooks: install  ## install the pre-commit hooks (.pre-commit-config.yaml) into .git
	$(BIN)/pre-commit install

demo: install  ## run the main job on the embedded real data
	$(BIN)/python -m geoclim.cli.demo

# One worker per CPU (at most 4), tests dealt out one by one, so the notebooks (one module)
# are shared between workers.
XDIST := --numprocesses=logical --maxprocesses=4 --dist=load

test: install  ## the fast test suite (CI), in parallel; lists its 10 slowest tests
	$(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) --durations=10

test-all: install  ## every test, slow ones included
	$(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) -m "not gpu"

lint: install  ## ruff lint + format check, mypy on geoclim/ (settings in pyproject.toml)
	$(BIN)/ruff check geoclim tests scripts
	$(BIN)/ruff format --check geoclim tests scripts
	$(BIN)/mypy geoclim

format: install  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix geoclim tests scripts
	$(BIN)/ruff format geoclim tests scripts

smoke: install  ## one synthetic training run from the CLI, in seconds
	$(BIN)/geoclim-train data=synthetic_grid model=lstm debug=smoke logger=csv

bench: install  ## benchmarks (results go to experiments/)
	$(BIN)/python scripts/bench_windows.py

clean-logs:  ## remove run outputs
	rm -rf outputs multirun logs wandb lightning_logs
