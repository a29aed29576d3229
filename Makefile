# The two set-up commands of the README: `make dev` and `make test`. Both create .venv.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
# checkov (the manifests' policy scan) pins packages that the test tools need newer: a venv of its own
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# openapi-python-client (the generator of the typed client the tests drive the API with) pins
# typer older than bazaar's own command line is installed with: a venv of its own too
GENERATOR_VENV ?= .venv-openapi
GENERATOR_STAMP := $(GENERATOR_VENV)/.installed

.PHONY: dev test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,bench,deploy]'
	touch $(STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.3.30'
	touch $(CHECKOV_STAMP)

$(GENERATOR_STAMP):
	$(PYTHON) -m venv $(GENERATOR_VENV)
	$(GENERATOR_VENV)/bin/pip install --quiet --upgrade pip
	$(GENERATOR_VENV)/bin/pip install --quiet 'openapi-python-client==0.29.1'
	touch $(GENERATOR_STAMP)

dev: $(STAMP)
	$(VENV)/bin/bazaar dev

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench chaos
	$(VENV)/bin/ruff format --check src tests bench chaos
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# The whole suite (the image built and its manifests played with podman included), then the
# API tests once more on every real server at once (a PostgreSQL primary with a replica, order
# shards on two servers, Redis, RabbitMQ: tests/scaled.py).
test: lint $(CHECKOV_STAMP) $(GENERATOR_STAMP)
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov \
	OPENAPI_PYTHON_CLIENT=$(CURDIR)/$(GENERATOR_VENV)/bin/openapi-python-client $(VENV)/bin/pytest
	BAZAAR_TEST_BACKEND=scaled $(VENV)/bin/pytest -q tests/*/test_api.py
