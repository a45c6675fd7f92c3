# The two commands a newcomer needs: `make up` and `make test`. Every target
# bootstraps the fresh clone first (uv into .tools/, the workspace into .venv/).
SHELL := /bin/bash
PYTHON ?= python3.11
TOOLS := .tools
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/uv/bin/uv)
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: setup up demo test test-unit lint bench lock clean

setup: $(VENV)/.synced

$(TOOLS)/uv/bin/uv:
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 ($(PYTHON)) is required"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock libs/common/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml | $(UV)
	$(UV) sync --all-packages --frozen
	@touch $@

up: setup
	$(VENV)/bin/syncplane up

demo: setup
	$(VENV)/bin/syncplane demo

test: setup lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

test-unit: setup
	$(VENV)/bin/pytest -q -m unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/python -m bench

lock: | $(UV)
	$(UV) lock

clean:
	rm -rf $(VENV) $(TOOLS)
