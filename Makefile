# The README's commands. `make demo` runs the product locally; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite

.PHONY: setup demo run test unit lint bench doctor clean

setup: $(STAMP) $(AZURITE)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(AZURITE)

## Run Azurite, the Graph simulator and the local host, subscribe, make changes, print the events.
demo: setup
	$(PY) -m devtools.demo

## Run Azurite, the Graph simulator and the local host on the example settings, until Ctrl-C.
run: setup
	$(PY) -m devtools.stack

## Lint, type-check, then every test (unit, functional, end to end). Starts and stops its own servers.
test: lint
	$(PY) -m pytest -p no:cacheprovider

unit: setup
	$(PY) -m pytest -p no:cacheprovider tests/unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared function_app.py devtools

## Benchmarks: prints a table of figures (not part of `make test`).
bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .run .mypy_cache .ruff_cache .pytest_cache
