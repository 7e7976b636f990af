# semcom: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.semcom-installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'

# The install is idempotent: the stamp is rebuilt only when pyproject.toml, the lock file
# or this Makefile changes. Every step installs under the exact versions of
# requirements-lock.txt (`-c`), so a fresh clone gets the tested set. torch comes first
# and pinned, so that pip takes the local CPU wheel (a bare `torch` would pull a CUDA
# build); compressai comes last with --no-deps because it pins numpy<2 (semcom/compat.py
# shims the imports it does not need).
PIP := $(VPY) -m pip install -q --disable-pip-version-check
LOCK := requirements-lock.txt
$(STAMP): pyproject.toml $(LOCK) Makefile
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -c $(LOCK) torch==2.13.0
	$(PIP) -c $(LOCK) -e '.[dev,codec]'
	$(PIP) -c $(LOCK) --no-deps compressai==1.2.8
	@touch $(STAMP)

venv: $(STAMP) ## Create or reuse .venv and install semcom (idempotent)

demo: $(STAMP) ## Run the main job on the tiny world: results, figures and summary in results/demo/ (not tracked)
	$(VENV)/bin/semcom demo

readme-figures: $(STAMP) ## Redraw the README's figures and summary (docs/results/demo/) from results/demo/results.json
	@test -f results/demo/results.json || { echo "no results/demo/results.json: run make demo first"; exit 2; }
	$(VENV)/bin/semcom demo --from results/demo/results.json --out docs/results/demo --format png

test: lint ## Lint (layering, ruff check, ruff format --check), then the test suite (not the slow tests)
	$(VPY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP) ## Check the layering (lint-imports), lint (ruff check) and formatting (ruff format --check)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-slow: $(STAMP) ## Run the slow tests only
	$(VPY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks; results printed and written to bench-results/
	$(VPY) -m benchmarks.run

proto: $(STAMP) ## Regenerate protos/*_pb2*.py from protos/semcom.proto
	$(VPY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. protos/semcom.proto

lock: $(STAMP) ## Rewrite requirements-lock.txt from this venv (after changing a dependency; commit it)
	$(VPY) -m pip freeze --exclude-editable | grep -viE '^(-e |semcom([ =@]|$$))' > $(LOCK)

clean: ## Remove caches (keeps .venv and results/)
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

.PHONY: help venv demo readme-figures test lint test-slow bench proto lock clean
