# The two commands a newcomer needs: `make run` and `make test`. Each bootstraps the
# virtual environment from the pinned lock file, so nothing is installed by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test lint test-sqlite test-postgres migrate venv

venv: $(STAMP)

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

# Development mode for the embedded default: generated secrets kept in ./data, with a warning.
run migrate: export DEBUG ?= 1

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/daphne -b $(HOST) -p $(PORT) qalby_site.asgi:application

lint: $(STAMP)
	$(BIN)/ruff check .

test-sqlite: $(STAMP)
	env -u DATABASE_URL $(BIN)/pytest

test-postgres: $(STAMP)
	bash scripts/services.sh postgres redis
	DATABASE_URL=$(PG_URL) $(BIN)/pytest

# The whole suite, on the embedded SQLite default and on PostgreSQL.
test: lint test-sqlite test-postgres
