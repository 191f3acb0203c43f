# The README's two commands: `make sandbox` and `make test`. Both provision what they need.
# `make check` is the fast loop while editing: lint, types, playbooks and unit tests, no services.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: sandbox test check lint provision install tools test-account bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "incidentbot needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: provision $(STAMP)

tools:
	bash scripts/install-tools.sh

test-account:
	bash scripts/test-account.sh

provision:
	bash scripts/provision.sh

sandbox: install
	$(BIN)/incidentbot sandbox

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bot commands sandbox tests

check: lint
	$(BIN)/incidentbot playbooks validate
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

# Two workers, each test file on one of them (a file's tests share their fixtures' set-up);
# every worker starts its own PostgreSQL, Redis, Prometheus and Alertmanager on free ports.
TEST_WORKERS ?= 2

test: install tools test-account lint
	$(BIN)/incidentbot playbooks validate
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=15

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
