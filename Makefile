# The two set-up commands of the README: `make dev` and `make test`. Both create .venv.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
# checkov (the manifests' policy scan) pins packages that the test tools need newer: a venv of its own
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

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
test: lint $(CHECKOV_STAMP)
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(VENV)/bin/pytest
	BAZAAR_TEST_BACKEND=scaled $(VENV)/bin/pytest -q tests/*/test_api.py
