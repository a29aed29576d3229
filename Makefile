# The two set-up commands of the README: `make dev` and `make test`. Both create .venv.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: dev test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/bazaar dev

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/lint-imports

# The whole suite, then the API tests once more on every real server at once (a PostgreSQL
# primary with a replica, order shards on two servers, Redis, RabbitMQ: tests/scaled.py).
test: lint
	$(VENV)/bin/pytest
	BAZAAR_TEST_BACKEND=scaled $(VENV)/bin/pytest -q tests/*/test_api.py
