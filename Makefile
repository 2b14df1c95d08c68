# The README's commands. `make demo` runs the product locally; `make test` runs every test.
# `make help` lists the targets with the `##` comment above each.
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

.PHONY: help setup demo run sim test unit lint deploy-check checkov doctor workbook-preview bench clean

## Print the targets and what each does.
help:
	@awk '/^## / { text = (text ? text "\n" : "") substr($$0, 4); next } \
		/^[a-zA-Z][a-zA-Z_-]*:/ && text { split($$0, t, ":"); n = split(text, lines, "\n"); \
			printf "  make %-18s %s\n", t[1], lines[1]; for (i = 2; i <= n; i++) printf "  %-23s %s\n", "", lines[i] } \
		{ text = "" }' $(MAKEFILE_LIST)

## Create .venv (Python packages, the CLI) and node_modules (Azurite), after checking the versions.
setup: $(STAMP) $(AZURITE)

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -m devtools.preflight python
	@echo "setup: creating $(VENV) with $(PYTHON) and installing requirements-dev.txt (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --progress-bar off -r requirements-dev.txt
	touch $(STAMP)

# npm's warnings are left out: the version check above says what matters, once.
$(AZURITE): package.json package-lock.json
	@$(PYTHON) -m devtools.preflight node
	@echo "setup: installing Azurite with npm ci"
	npm ci --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

## Run Azurite, the Graph simulator and the local host, subscribe, make changes, print the events.
## `make demo ARGS="--tenants 3"` serves three tenants (TENANT_MODE=multi), their events side by side.
## `make demo ARGS=--event-grid` delivers through an Event Grid partner topic, as CloudEvents.
demo: setup
	$(PY) -m devtools.demo $(ARGS)

## Run Azurite, the Graph simulator and the local host on the example settings, until Ctrl-C.
## `make run ARGS=--no-host` leaves port 7071 to `func start`.
run: setup
	exec $(PY) -m devtools.stack $(ARGS)  # make's own child: it stops when make's terminal or make goes

## Drive the simulator of a running `make run`, e.g.
## make sim ARGS="files create demo-drive report.txt --content draft"   (make sim ARGS=--help lists all)
sim: setup
	$(PY) -m devtools.simctl $(ARGS)

## Lint, type-check, check the deployment, then every test (unit, functional, end to end).
## Starts and stops its own servers. Two pytest workers: most tests wait on servers, not on the CPU.
test: lint deploy-check
	@echo "test: pytest, two workers (unit, functional, end to end: several minutes)"
	$(PY) -m pytest -p no:cacheprovider -n 2 --dist worksteal

## The unit tests alone (seconds).
unit: setup
	$(PY) -m pytest -p no:cacheprovider tests/unit

## ruff check, ruff format --check, strict mypy (the first mypy run, with no cache, takes minutes), import-linter.
lint: setup
	@echo "lint: ruff check"
	$(VENV)/bin/ruff check .
	@echo "lint: ruff format --check"
	$(VENV)/bin/ruff format --check .
	@echo "lint: mypy --strict (minutes without .mypy_cache, seconds after)"
	$(VENV)/bin/mypy shared function_app.py devtools graphhooks bench
	@echo "lint: import-linter (shared/ imports run downward through its layers; see docs/architecture.md)"
	$(VENV)/bin/lint-imports

$(TOOLS_STAMP):
	@echo "deploy-check: installing checkov $(CHECKOV_VERSION) and azure-functions-doctor $(DOCTOR_VERSION)"
	@echo "  into $(TOOLS) (minutes, once)"
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --progress-bar off checkov==$(CHECKOV_VERSION) azure-functions-doctor==$(DOCTOR_VERSION)
	touch $(TOOLS_STAMP)

## Static checks of the deployment: checkov on infra/, then azure-functions-doctor on the app.
deploy-check: checkov doctor

## checkov on infra/ (Bicep; every skip carries its reason in the resource).
checkov: $(TOOLS_STAMP)
	@mkdir -p .run
	@echo "deploy-check: checkov on infra/"
	@$(TOOLS)/bin/checkov -d infra --framework bicep --skip-download --quiet --compact > .run/checkov.txt; \
		status=$$?; cat .run/checkov.txt; \
		if grep -q "Parsing errors" .run/checkov.txt; then echo "checkov could not parse a template"; exit 1; fi; \
		exit $$status

## azure-functions-doctor on the app (flex consumption profile), with no failures.
doctor: $(TOOLS_STAMP)
	@mkdir -p .run
	@echo "deploy-check: azure-functions-doctor on the app"
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

## Remove what setup and the tests made: virtualenvs, node_modules, .run, caches, the egg-info.
clean:
	rm -rf $(VENV) $(TOOLS) node_modules .run .mypy_cache .ruff_cache .pytest_cache *.egg-info
