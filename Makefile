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
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

# The install is idempotent: the stamp is rebuilt only when pyproject.toml or this
# Makefile changes. torch comes first and pinned, so that pip takes the local CPU
# wheel (a bare `torch` would pull a CUDA build); compressai comes last with --no-deps
# because it pins numpy<2 (semcom/compat.py shims the imports it does not need).
$(STAMP): pyproject.toml Makefile
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev,codec]'
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps compressai==1.2.8
	@touch $(STAMP)

venv: $(STAMP) ## Create or reuse .venv and install semcom (idempotent)

demo: $(STAMP) ## Run the main job on the tiny world: results, figures and summary under experiments/demo/
	$(VENV)/bin/semcom demo

test: $(STAMP) ## Run the test suite (not the slow tests)
	$(VPY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP) ## Run the slow tests only
	$(VPY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks; results printed and written to bench-results/
	$(VPY) -m benchmarks.run

proto: $(STAMP) ## Regenerate protos/*_pb2*.py from protos/semcom.proto
	$(VPY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. protos/semcom.proto

lock: $(STAMP) ## Write requirements-lock.txt (exact versions of this venv)
	$(VPY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements-lock.txt

clean: ## Remove caches (keeps .venv and results)
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

.PHONY: help venv demo test test-slow bench proto lock clean
