# prelabel — every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_VERSION ?= 3.11
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) scripts/stack.py
PYTEST_ARGS ?=

export PRELABEL_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/prelabel_test
export PRELABEL_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
# `make test`'s own RabbitMQ node (scripts/stack.py up --test-broker), started empty.
export PRELABEL_TEST_AMQP_PORT ?= 5682
export PRELABEL_TEST_S3_ENDPOINT_URL ?= http://127.0.0.1:8333
export PRELABEL_TEST_TRITON_URL ?= 127.0.0.1:8000
export PRELABEL_TEST_TRITON_GRPC_URL ?= 127.0.0.1:8001

.PHONY: help install up down status demo test test-unit chaos lint format bench clean compose-test test-deploy compose-down

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv) ## Create .venv from uv.lock
	$(UV) sync --frozen --python $(PYTHON_VERSION)

up: install ## Start the local stack and the five services (idempotent)
	$(STACK) up

down: ## Stop what `make up` started
	@if [ -x $(PY) ]; then $(STACK) down; fi

status: install ## Show what runs where
	$(STACK) status

demo: install ## Start everything and show what runs where
	$(STACK) up
	$(PY) scripts/demo.py

test: install ## The whole suite: unit, contract and integration tests on the real servers
	$(STACK) up --no-services --test-tools --test-broker
	PRELABEL_AMQP_PORT=$(PRELABEL_TEST_AMQP_PORT) \
	PRELABEL_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$(PRELABEL_TEST_AMQP_PORT)/ \
	  $(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

compose-test: install ## Build the images, start docker-compose.yml with podman, predict through nginx, tear down
	$(PY) scripts/container_tools.py
	PRELABEL_DEPLOY_TESTS=1 $(PY) -m pytest -p no:cacheprovider tests/integration/deploy/test_compose_stack.py $(PYTEST_ARGS)

test-deploy: compose-test ## What CI runs for the deployment (same as compose-test)

compose-down: ## Stop the compose stack and the worker containers its router started (Docker); with Podman, the test's stack
	@if docker info >/dev/null 2>&1; then \
	  ids=$$(docker ps -aq --filter label=io.prelabel.role=predict-worker); \
	  if [ -n "$$ids" ]; then docker rm -f $$ids; fi; \
	  if docker compose version >/dev/null 2>&1; then docker compose down; else docker-compose down; fi; \
	fi
	@if command -v podman >/dev/null 2>&1 && [ -x $(PY) ]; then $(PY) -m tests.integration.deploy.compose_stack down; fi

chaos: install ## Fault suite at full size: 1,000 items per way; kill -9 of each service and the workers, broker, database and Triton restarts, each alone and all in one run
	$(STACK) up --no-services
	PRELABEL_CHAOS_ITEMS=1000 PRELABEL_CHAOS_QUIESCE_S=900 PRELABEL_CHAOS_RUNS=services,rabbitmq,postgresql,triton,all $(PY) -m pytest tests/chaos -s $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install ## Benchmarks against the real servers; prints a table of figures and ratios
	$(STACK) up --no-services
	PYTHONPATH=scripts $(PY) -m bench.run

clean: down ## Stop the stack and remove its data
	rm -rf .stack .bench
