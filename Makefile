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

.PHONY: install lock run test test-fast lint typecheck pytest pytest-fast bench clean browser

AXE := tests/web/axe/node_modules/axe-core/axe.min.js

install: $(STAMP) browser $(AXE)

# Re-install when pyproject.toml or a lock changes: the exact versions of the lock, then the
# project itself (editable, no dependencies of its own choosing).
$(STAMP): pyproject.toml $(LOCK) $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check  # a dependency in pyproject.toml missing from the lock: run `make lock`
	touch $(STAMP)

# The runtime lock first; the dev lock is constrained by it, so both agree on shared packages.
# Not through `install`: a dependency new in pyproject.toml fails install's `pip check` until
# the lock has it, so `lock` only needs pip-tools in the venv.
lock:
	test -x $(BIN)/pip-compile || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet pip-tools; }
	$(PIP_COMPILE) --output-file $(LOCK) pyproject.toml
	$(PIP_COMPILE) --extra dev --constraint $(LOCK) --output-file $(DEV_LOCK) pyproject.toml

# The web view's browser tests: Debian's chromium + chromium-driver (apt-get, only as root with
# apt available; otherwise the tests skip loudly, and fail under CI=true).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "install: chromium and chromium-driver for the browser tests (apt-get)"; \
	  apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
	  || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; } \
	  || echo "install: apt-get could not install chromium; the browser tests will skip"; \
	else echo "install: chromium/chromedriver missing and not root with apt-get: the browser tests will skip"; fi

# axe-core (pinned in tests/web/axe/package-lock.json) for the accessibility check.
$(AXE): tests/web/axe/package.json tests/web/axe/package-lock.json
	@cd tests/web/axe && npm ci --no-audit --no-fund --silent \
	  || echo "install: npm ci failed; the accessibility check will skip"

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
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache tests/web/axe/node_modules
