# The README's two commands: `make run` and `make test`. `make install` is the bootstrap both use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench clean browser

AXE := tests/web/axe/node_modules/axe-core/axe.min.js

install: $(STAMP) browser $(AXE)

# Re-install only when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

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

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench.store_and_api
	$(BIN)/python -m bench.messaging --store sqlite

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache tests/web/axe/node_modules
