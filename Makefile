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
# The sample brand Lune's Shopify shop is the stand-in on 127.0.0.1:8470: its Admin API token and
# webhook secret (a real shop's live in the deployment's secret store).
export LUNE_SHOPIFY_TOKEN ?= shpat_lune_sample_token
export LUNE_SHOPIFY_WEBHOOK_SECRET ?= lune-sample-webhook-secret

.PHONY: demo test check-defs dev check-config docs clean

$(BIN)/bspk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/bspk  ## generate the sample brands' files, ingest them through Dagster, print what happened
	$(BIN)/bspk demo

test: $(BIN)/bspk  ## the whole test suite (SQLite and the local PostgreSQL)
	$(BIN)/pytest -n 2 --dist loadfile

# On a throwaway instance of the project's config: the check needs one, and must not touch the demo's runs.
check-defs: $(BIN)/bspk  ## every brand's definitions load as a code server would load them (dg check defs)
	home=$$(mktemp -d) && cp dagster.yaml "$$home" && DAGSTER_HOME=$$home $(BIN)/dg check defs; status=$$?; rm -rf "$$home"; exit $$status

# `bspk dev` runs dagster dev and `bspk serve` (http://127.0.0.1:8000) each in a session of its own and
# stops both, with every process they started, on SIGTERM or Ctrl-C. exec: make's child is the launcher
# itself, to which make passes a SIGTERM it gets. DEV_ARGS='--port 3001 --api-port 8001' moves the ports.
dev: $(BIN)/bspk  ## the Dagster UI, daemon, sensors and schedules on the demo's instance, and the REST API beside them
	exec $(BIN)/bspk dev $(DEV_ARGS)

check-config: $(BIN)/bspk
	$(BIN)/bspk check-config

docs: $(BIN)/bspk  ## docs/entities.md rewritten from the entity specs (a test fails when it is stale)
	$(BIN)/bspk entities --write docs/entities.md

clean:
	rm -rf $(VENV) .dagster_home data
