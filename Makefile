# Two commands set everything up on a fresh Debian/Ubuntu machine:
#   make demo   - the main job on the embedded defaults (no servers needed)
#   make test   - system packages (as root), virtualenv, ruff, mypy, pytest
#   make hub    - PostgreSQL, Redis, sandbox PACS, JupyterHub + workbench service + 2 workers
#                 on this machine (make hub-stop ends them; see deploy/README.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := orthanc orthanc-dicomweb dcmtk redis-server postgresql dcm2niix chromium
PYTEST_ARGS ?=

.PHONY: all venv system-packages lint test demo hub hub-stop bench clean

all: test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,jupyter]'
	touch $@

venv: $(BIN)/.installed

# Installs only what is missing, and only when run as root; otherwise says what is missing.
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing system packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
		/etc/init.d/orthanc stop >/dev/null 2>&1 || true; \
	else \
		echo "not root: missing system packages will make some tests skip:" $$missing; \
	fi

lint: venv
	$(BIN)/ruff check adit_workbench tests bench
	$(BIN)/ruff format --check adit_workbench tests bench
	$(BIN)/mypy

test: system-packages venv lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: venv
	bash scripts/demo.sh

hub: system-packages venv
	$(BIN)/adit-workbench hub start

hub-stop: venv
	$(BIN)/adit-workbench hub stop

bench: venv
	$(BIN)/python -m bench.query
	$(BIN)/python -m bench.deid
	$(BIN)/python -m bench.transfer
	$(BIN)/python -m bench.jobs
	$(BIN)/python -m bench.cli

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
