# The two commands: `make up` (the local stack in the foreground) and `make test`.
# Both install what they need on first run. Everything else here is a helper of those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test install engine lint typecheck pytest bench bench-routing loadtest dashboards dashboards-preview clean help

help:
	@echo "make up      run the local stack: real vLLM (CPU) + gateway + Prometheus"
	@echo "make test    lint, types and every test (gateway, engine, Terraform, Kubernetes, rules, load tests)"
	@echo "make bench   gateway overhead against the direct path (fake engine)"

$(STAMP): pyproject.toml $(wildcard requirements/*.txt)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e . $(foreach f,$(wildcard requirements/*.txt),$(if $(filter engine.txt,$(notdir $(f))),,-r $(f)))
	@touch $(STAMP)

install: $(STAMP)

engine: $(STAMP)
	bash scripts/engine-venv.sh

up: install engine
	bash scripts/install-observability.sh || echo "prometheus could not be installed: the stack runs without it"
	$(PY) -m inferstack.devstack

lint: install
	$(VENV)/bin/ruff check service bench loadtests observability
	$(VENV)/bin/ruff format --check service/inferstack

typecheck: install
	$(VENV)/bin/mypy

pytest: install engine
	for s in scripts/install-*.sh; do bash $$s; done
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(PY) bench/gateway_bench.py

bench-routing: install
	$(PY) bench/routing/run.py

clean:
	rm -rf .cache/devstack .pytest_cache .mypy_cache .ruff_cache
