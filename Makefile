# The README's two commands: `make run` and `make test`. `make install` is the bootstrap both use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pip-compile (pip-tools) writes the locks from pyproject.toml: `make lock` after changing a
# dependency there. Pinned and hashed, installed by plain pip (no pip-tools needed to install).
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
PIP_COMPILE := $(BIN)/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe \
	--no-emit-index-url --no-emit-find-links

.PHONY: install lock run test test-fast lint typecheck pytest pytest-fast bench clean

install: $(STAMP)

# Re-install when pyproject.toml or a lock changes: the exact versions of the lock, then the
# project itself (editable, no dependencies of its own choosing).
$(STAMP): pyproject.toml $(LOCK) $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check  # a dependency in pyproject.toml missing from the lock: run `make lock`
	touch $(STAMP)

# The runtime lock first; the dev lock is constrained by it, so both agree on shared packages.
lock: install
	$(PIP_COMPILE) --output-file $(LOCK) pyproject.toml
	$(PIP_COMPILE) --extra dev --constraint $(LOCK) --output-file $(DEV_LOCK) pyproject.toml

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

# Without the slow tests (live servers, subprocesses, the docs test, the image build) and
# without PostgreSQL: the edit-test loop.
pytest-fast: install
	$(BIN)/pytest -n 3 --dist loadfile -m "not slow and not postgres"

test: lint typecheck pytest

test-fast: lint typecheck pytest-fast

bench: install
	$(BIN)/python -m bench.store_and_api
	$(BIN)/python -m bench.messaging --store sqlite

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
