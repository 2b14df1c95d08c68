# The README's commands. `make demo` runs the product locally; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite
# Deployment checkers live in their own virtualenv: checkov pins many packages the app's don't match.
TOOLS := .venv-tools
CHECKOV_VERSION := 3.3.30
DOCTOR_VERSION := 0.23.1
TOOLS_STAMP := $(TOOLS)/.installed-checkov-$(CHECKOV_VERSION)-doctor-$(DOCTOR_VERSION)

.PHONY: setup demo run test unit lint deploy-check workbook-preview bench doctor clean

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
## `make run ARGS=--no-host` leaves port 7071 to `func start`.
run: setup
	$(PY) -m devtools.stack $(ARGS)

## Lint, type-check, check the deployment, then every test (unit, functional, end to end).
## Starts and stops its own servers. Two pytest workers: most tests wait on servers, not on the CPU.
test: lint deploy-check
	$(PY) -m pytest -p no:cacheprovider -n 2 --dist worksteal

unit: setup
	$(PY) -m pytest -p no:cacheprovider tests/unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared function_app.py devtools graphhooks bench

$(TOOLS_STAMP):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet checkov==$(CHECKOV_VERSION) azure-functions-doctor==$(DOCTOR_VERSION)
	touch $(TOOLS_STAMP)

## Static checks of the deployment: checkov on infra/ (Bicep; every skip carries its reason in
## the resource), then azure-functions-doctor on the app with no failures.
deploy-check: $(TOOLS_STAMP)
	@mkdir -p .run
	@$(TOOLS)/bin/checkov -d infra --framework bicep --skip-download --quiet --compact > .run/checkov.txt; \
		status=$$?; cat .run/checkov.txt; \
		if grep -q "Parsing errors" .run/checkov.txt; then echo "checkov could not parse a template"; exit 1; fi; \
		exit $$status
	$(TOOLS)/bin/azure-functions-doctor doctor --path . --profile full --hosting-plan flex-consumption \
		--summary-json .run/doctor.json
	@$(TOOLS)/bin/python -c "import json, sys; f = json.load(open('.run/doctor.json')); \
		print('azure-functions-doctor:', f); sys.exit(1 if f.get('failed', 1) else 0)"

## Draw the workbook's charts from a local run's metrics into docs/workbook.png (needs chromium).
workbook-preview: setup
	$(PY) -m devtools.workbook_preview

## Benchmarks: prints a table of figures (not part of `make test`).
bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(TOOLS) node_modules .run .mypy_cache .ruff_cache .pytest_cache
