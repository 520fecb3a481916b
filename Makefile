# The README's two commands: `make run` and `make test`. `make install` is the bootstrap both use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench clean

install: $(STAMP)

# Re-install only when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/brobygger serve --demo --host 127.0.0.1 --port 8080

lint: install
	$(BIN)/ruff check gateway mappings profiles consent tests bench
	$(BIN)/ruff format --check gateway mappings profiles consent tests bench

typecheck: install
	$(BIN)/mypy

# Three workers, one test file per worker at a time (files keep their fixtures together).
pytest: install
	$(BIN)/pytest -n 3 --dist loadfile

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench.store_and_api
	$(BIN)/python -m bench.messaging --store sqlite

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
