# Two entry points (see README): `make demo` and `make test`. Everything else is plumbing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint typecheck unit demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) $(MELTANO_VENV) .meltano .pytest_cache .mypy_cache .ruff_cache demo-output

# The Meltano tool venv: Meltano pins its own dependency set, so it never shares the project venv.
MELTANO_VENV ?= .venv-meltano
MELTANO_STAMP := $(MELTANO_VENV)/.installed

$(MELTANO_STAMP):
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/pip install --quiet --upgrade pip
	$(MELTANO_VENV)/bin/pip install --quiet 'meltano==4.4.1' 'duckdb==2.0.1'
	touch $(MELTANO_STAMP)

demo: setup $(MELTANO_STAMP)
	$(MELTANO_VENV)/bin/python demo/run_demo.py

bench: setup
	$(BIN)/python -m benchmarks.run_all --n $(or $(N),100000)
