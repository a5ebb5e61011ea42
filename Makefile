# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export BSPK_DATA_DIR ?= $(CURDIR)/data
export BSPK_MAPPINGS_DIR ?= $(CURDIR)/mappings

.PHONY: demo test dev check-config clean

$(BIN)/bspk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/bspk  ## generate the sample brands' files, ingest them through Dagster, print what happened
	$(BIN)/bspk demo

test: $(BIN)/bspk  ## the whole test suite (SQLite and the local PostgreSQL)
	$(BIN)/pytest -n 2 --dist loadfile

dev: $(BIN)/bspk  ## the Dagster UI, daemon, sensors and schedules on the same instance as the demo
	mkdir -p $(DAGSTER_HOME) && test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

check-config: $(BIN)/bspk
	$(BIN)/bspk check-config

clean:
	rm -rf $(VENV) .dagster_home data
