# Tributary — every target is a thin wrapper over the `tributary` CLI or pytest.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: help install up demo test test-unit bench lint docs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) $(MANIFEST) ## Create .venv, install Tributary with its dev tools, build the dbt manifest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(MANIFEST): $(STAMP) $(shell find dbt_project -name '*.sql' -o -name '*.yml' -o -name '*.md' | grep -v target/)
	cd dbt_project && ../$(BIN)/dbt parse --profiles-dir . --quiet
	touch $(MANIFEST)

up: install ## Start PostgreSQL, the API (:8000) and the Dagster UI (:3000) until Ctrl-C
	$(BIN)/tributary up

demo: install ## Post synthetic traffic over HTTP, process it, build the marts, print a summary
	$(BIN)/tributary demo

test: install ## Run every test: unit, integration (embedded PostgreSQL) and end-to-end
	$(BIN)/pytest

test-unit: install ## Run the unit tests only (no database)
	$(BIN)/pytest tests/unit

bench: install ## Run the benchmarks in bench/ (each prints a JSON line last)
	@shopt -s nullglob; scripts=(bench/[!_]*.py); [ $${#scripts[@]} -gt 0 ] || echo "no benchmarks in bench/ yet"; \
	for script in "$${scripts[@]}"; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: install ## Check style with ruff
	$(BIN)/ruff check tributary ingest_api orchestration tests bench
	$(BIN)/ruff format --check tributary ingest_api orchestration tests bench

docs: install ## Build dbt's docs site (every mart, column and definition) and say how to serve it
	$(BIN)/tributary db start
	$(BIN)/python -m orchestration.dbt_cli docs generate --static
	@echo "dbt docs: open dbt_project/target/static_index.html (one self-contained file), or serve the site"
	@echo "  (dbt_project/target/index.html) at http://127.0.0.1:8080: $(BIN)/python -m orchestration.dbt_cli docs serve --port 8080"

clean: ## Remove the virtualenv, the dbt build output (docs included) and local data (.tributary)
	-$(BIN)/tributary db stop 2>/dev/null
	rm -rf $(VENV) dbt_project/target dbt_project/logs .tributary
