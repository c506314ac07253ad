# The two commands: `make up` (the local stack in the foreground) and `make test`.
# Both install what they need on first run. Everything else here is a helper of those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every requirements file but the engine's (that one is .venv-engine's, see scripts/engine-venv.sh).
REQUIREMENTS := $(filter-out requirements/engine.txt,$(wildcard requirements/*.txt))
PYTEST_ARGS ?=

.PHONY: help up test disk install engine tools lint typecheck generated pytest bench bench-reference router-image bench-routing bench-routing-real bench-adapters-real \
	loadtest dashboards dashboards-preview fleet mutation clean

help:
	@echo "make up                  the local stack: real vLLM (CPU) + gateway + Prometheus, in the foreground"
	@echo "make test                lint, types, generated files, and every test (what CI runs)"
	@echo "make bench               gateway overhead against the direct path; tenancy hot-path cost"
	@echo "make bench-reference     the gateway's CPU per request as a ratio to vllm-router's (Rust), measured here, interleaved (IMAGE=...: the gateway image, bench/container.py; ROUTER_IMAGE=...: vllm-router's, make router-image)"
	@echo "make router-image        vllm-router as an image on the gateway image's base (localhost/bench/vllm-router:VERSION), for the line above"
	@echo "make bench-routing       routing policies on a simulated 8-replica fleet"
	@echo "make bench-routing-real  routing policies on 3 real vLLM CPU replicas (prefix-cache hit rates; PLAN=pressure: a cache 0.18 of the system prompts, 12 conversations at once; PLAN=interleaved: those conversations, 10 under way, 5 turns in flight)"
	@echo "make bench-adapters-real LoRA adapter placement on 2 real vLLM CPU replicas (adapter loads, TTFT)"
	@echo "make loadtest            locust against the local stack (HOST=... PROFILE=... REPORT_DIR=...; key: INFERSTACK_API_KEY)"
	@echo "make dashboards          regenerate dashboards and rules from observability/*_src"
	@echo "make fleet               validate fleet/ (models, adapters) and regenerate k8s/fleet/generated"
	@echo "make dashboards-preview  PNGs of every dashboard from the Prometheus of make up"
	@echo "make mutation            mutation testing of the gateway's hot path (DEADLINE=seconds, MUTATION_ARGS='--mutants GLOB --resume'; not in make test)"

$(STAMP): pyproject.toml $(REQUIREMENTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e . $(addprefix -r ,$(REQUIREMENTS))
	@touch $(STAMP)

install: $(STAMP)

# Enough free disk for what this run installs (scripts/check-disk.sh): stops before any install if not.
disk:
	@bash scripts/check-disk.sh $(if $(filter up,$(MAKECMDGOALS)),up,test)

engine: $(STAMP)
	bash scripts/engine-venv.sh

# System tools the tests need (Prometheus, Redis, linters, checkov, Terraform): each script is idempotent.
tools: $(STAMP)
	@for s in scripts/install-*.sh; do bash $$s || exit 1; done

up: disk install
	@bash scripts/install-observability.sh || echo "Prometheus could not be installed: the stack runs without it"
	$(PY) -m inferstack_devstack

lint: install
	$(VENV)/bin/ruff check service bench loadtests observability k8s fleet tests .github/scripts conftest.py
	$(VENV)/bin/ruff format --check service conftest.py

# bench/routing_real/run.py's module name, run, is loadtests/run.py's too: checked on its own, siblings on the path.
typecheck: install
	$(VENV)/bin/mypy
	MYPYPATH=service:bench:bench/routing_real $(VENV)/bin/mypy bench/routing_real/run.py bench/routing_real/front_end_idle.py

generated: tools
	$(PY) -m observability.generate --check
	$(PY) -m inferstack_fleet generate --check

pytest: install engine tools
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: disk lint typecheck generated pytest

bench: install
	$(PY) bench/gateway_bench.py --out bench/results/gateway.json
	$(PY) bench/tenancy_bench.py --out bench/results/tenancy.json
	$(PY) bench/http_client_bench.py --out bench/results/http_client.json

# vllm-router, the Rust router issue 13's CPU targets were set against, in a venv of its own (PyPI),
# and as an image on the gateway image's base (bench/images/vllm-router) to compare image with image.
# The version is bench/reference_bench.py's ROUTER_VERSION (a test holds them together).
REF_VENV := .venv-ref
ROUTER_VERSION := 0.1.17
$(REF_VENV)/.installed:
	@test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install -q --disable-pip-version-check vllm-router==$(ROUTER_VERSION)
	@touch $@

# Each pairing writes a file of its own: reference.json, reference_image.json (the gateway image),
# reference_router_image.json (vllm-router's), reference_image_both.json (both).
REFERENCE_OUT = reference$(if $(IMAGE),_image$(if $(ROUTER_IMAGE),_both),$(if $(ROUTER_IMAGE),_router_image)).json
bench-reference: install $(REF_VENV)/.installed
	$(PY) bench/reference_bench.py --router $(REF_VENV)/bin/vllm-router $(if $(ROUTER_IMAGE),--router-image $(ROUTER_IMAGE)) \
		$(if $(IMAGE),--image $(IMAGE)) --out bench/results/$(REFERENCE_OUT)

# The image tests' store and base (make test builds them; bench/container.py runs images from there).
router-image: install
	$(PY) -c 'import sys; sys.path[:0] = ["tests/images"]; import _podman; print(_podman.build_router_image("$(ROUTER_VERSION)"))'

bench-routing: install
	$(PY) bench/routing/run.py

bench-routing-real: install engine
	$(PY) bench/routing_real/run.py $(if $(PLAN),--plan $(PLAN) --out bench/routing_real/results_$(PLAN).json,--out bench/routing_real/results.json)

bench-adapters-real: install engine
	$(PY) bench/adapters_real/run.py --out bench/adapters_real/results.json

loadtest: install
	$(PY) loadtests/run.py $(if $(HOST),--host $(HOST)) $(if $(PROFILE),--profile $(PROFILE)) \
		$(if $(REPORT_DIR),--report-dir "$(REPORT_DIR)")

# Long (tens of minutes on 2 cores): writes bench/results/mutation.json; docs/mutation.md explains survivors.
mutation: install
	$(PY) scripts/mutation.py --deadline $${DEADLINE:-3600} $(MUTATION_ARGS)

dashboards: install
	$(PY) -m observability.generate

fleet: install
	$(PY) -m inferstack_fleet generate

dashboards-preview: install
	$(PY) -m observability.preview --prometheus http://127.0.0.1:$${PROMETHEUS_PORT:-9090} --out observability/preview

clean:
	rm -rf .cache/devstack .pytest_cache .mypy_cache .ruff_cache
