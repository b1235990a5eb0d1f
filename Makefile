# Rillet: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
# uv from PATH, else the one `make uv` installs into this Python with pip.
UV ?= $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
PYTEST_ARGS ?=

.PHONY: help
help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: uv
uv: ## Install uv if missing
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) --version >/dev/null 2>&1 || { echo "uv could not be installed"; exit 1; }

.PHONY: install
install: uv ## Install the package and its dev tools from uv.lock
	$(UV) sync --frozen

.PHONY: run
run: install ## Start Rillet on http://127.0.0.1:8000 (SQLite, demo model)
	$(UV) run --frozen rillet serve

.PHONY: services
services: ## Start PostgreSQL and Redis when they are not running
	@scripts/services.sh

.PHONY: test
test: install services ## Run the whole test suite
	$(UV) run --frozen pytest $(PYTEST_ARGS)

.PHONY: lint
lint: install ## Ruff and mypy (strict)
	$(UV) run --frozen ruff check src tests benchmarks
	$(UV) run --frozen ruff format --check src tests benchmarks
	$(UV) run --frozen mypy

.PHONY: format
format: install ## Format the code
	$(UV) run --frozen ruff format src tests benchmarks
	$(UV) run --frozen ruff check --fix src tests benchmarks

.PHONY: bench
bench: install ## Run the benchmarks (prints a table against the transport floor)
	$(UV) run --frozen python benchmarks/ws_stream.py
