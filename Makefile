# The two commands a newcomer needs: `make run` and `make test`. Each bootstraps the
# virtual environment from the pinned lock files (the app's and the tests'), so nothing is installed by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
EMULATOR_PORT ?= 9100
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run demo test lint test-sqlite test-postgres migrate venv mutation

venv: $(STAMP)

$(STAMP): requirements.lock requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock -r requirements-dev.lock
	touch $(STAMP)

# Development mode for the embedded default: generated secrets kept in ./data, with a warning.
run migrate demo: export DEBUG ?= 1

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python -m qalby_site.serve --host $(HOST) --port $(PORT)

# No provider account needed: the server beside the providers' loopback emulator (tests/emulator, on
# EMULATOR_PORT), demo configs and a new demo key in the same ./data, and curl lines to paste. Ctrl-C stops both.
demo: migrate
	$(BIN)/python manage.py demo --host $(HOST) --port $(PORT) --emulator-port $(EMULATOR_PORT)

# The linters of the Dockerfile, the entry point and the Helm chart have an environment of their
# own (requirements-lint.in says why); tests/deploy/test_chart.py renders the chart with it too.
LINT_VENV := $(VENV)/lint
LINT_STAMP := $(LINT_VENV)/.installed

$(LINT_STAMP): requirements-lint.lock
	test -x $(LINT_VENV)/bin/python || $(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-lint.lock
	touch $(LINT_STAMP)

# The image is not built here (no Docker engine): its Dockerfile is linted, its entry point tested.
lint: $(STAMP) $(LINT_STAMP)
	$(BIN)/ruff check .
	$(LINT_VENV)/bin/hadolint Dockerfile
	$(LINT_VENV)/bin/shellcheck docker/entrypoint.sh
	$(LINT_VENV)/bin/python scripts/check_chart.py

# Each run shuffles modules and the tests inside them (pytest-randomly), so a test that needs another
# to run first fails; the seed is on the command line make prints: `make test SEED=N` replays that order.
SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')

# The chart tests render with the lint venv (tests/deploy/test_chart.py fails without it): built here too.
test-sqlite: $(STAMP) $(LINT_STAMP)
	bash scripts/services.sh postgres redis chromium
	env -u DATABASE_URL $(BIN)/pytest -p randomly --randomly-seed=$(SEED)

test-postgres: $(STAMP) $(LINT_STAMP)
	bash scripts/services.sh postgres redis chromium
	DATABASE_URL=$(PG_URL) $(BIN)/pytest -p randomly --randomly-seed=$(SEED)

# The whole suite, on the embedded SQLite default and on PostgreSQL.
test: lint test-sqlite test-postgres

# The mutation check of the engine, the redaction, the SSRF guard and the client-key auth (about 15
# minutes on two cores; scripts/mutation.py says what it prints and when it fails). Not part of `make
# test`: run it nightly and on changes to those modules. MUTATION_ARGS=--fresh forgets cached results.
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py $(MUTATION_ARGS)
