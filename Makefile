# wactl developer entry points. The two a newcomer needs (see README.md):
#   make demo   set up a venv and run `wactl quickstart` on embedded defaults (SQLite,
#               sandbox engine): a demo bot answering two customer messages
#   make test   set up a venv and run lint, type checks and the whole test suite
#               (SQLite and PostgreSQL, real Chromium from Debian's package, installed
#               when missing); .ci/run runs exactly this.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Test processes: one more than the cores (most tests wait on daemons, browsers and
# servers). `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: setup demo test lint typecheck pytest docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/wactl quickstart

lint: setup
	$(BIN)/ruff check src tests alembic bench
	$(BIN)/ruff format --check src tests alembic bench
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

pytest: setup
	scripts/ensure-postgres
	scripts/ensure-chromium
	scripts/ensure-systemd-analyze
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

test: lint typecheck pytest

docs: setup
	$(BIN)/python -m wactl.cli.manpage --write

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
