# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export BSPK_DATA_DIR ?= $(CURDIR)/data
export BSPK_MAPPINGS_DIR ?= $(CURDIR)/mappings
# Webhook signing secrets of the two sample brands (their receivers run on 127.0.0.1 only).
# A real brand's secret lives in the deployment's secret store, never in a file like this one.
export ACME_WEBHOOK_SECRET ?= whsec_c2FtcGxlLWFjbWUtc2VjcmV0LTIwMjY=
export MAISON_WEBHOOK_SECRET ?= whsec_c2FtcGxlLW1haXNvbi1zZWNyZXQtMjAyNg==
# The demo's key for the signing secrets the API stores (a deployment makes its own: README, "Webhook security"),
# and the network of the demo's receivers, which webhooks may reach only because it is allowed here.
export BSPK_WEBHOOK_ENCRYPTION_KEYS ?= _UAZoFt6ZBNtxgniYiEYG4j8QTEj-9G4qkjtubierVQ=
export BSPK_WEBHOOK_ALLOW_NETWORKS ?= 127.0.0.0/8

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

# `bspk serve` (http://127.0.0.1:8000) runs in the background of the recipe's shell, so in the same process
# group as dagster dev: Ctrl-C reaches both, and however dagster dev ends, the API is stopped with it.
dev: $(BIN)/bspk  ## the Dagster UI, daemon, sensors and schedules on the demo's instance, and the REST API beside them
	mkdir -p $(DAGSTER_HOME) && test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/bspk serve & api=$$!; \
	trap 'kill $$api 2>/dev/null; wait $$api 2>/dev/null' EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml

check-config: $(BIN)/bspk
	$(BIN)/bspk check-config

clean:
	rm -rf $(VENV) .dagster_home data
