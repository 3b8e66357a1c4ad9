# loglab: two commands on a fresh Debian machine.
#   make test   set everything up and run the test suite
#   make bench  set everything up and run the main job (the transport comparison)
# `make setup` alone creates .venv with the package and its dev extras.

SHELL := /bin/bash
# Prefer a 3.11 interpreter (the project's target); fall back to python3.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup setup-system setup-tracing test bench clean

setup: $(STAMP)

# Reinstall when the package metadata changes; editable install keeps the code live.
$(STAMP): pyproject.toml
	@bash scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup-tracing:
	@bash scripts/setup-tracing.sh

test: setup
	@if [ "$$(id -u)" = 0 ]; then bash scripts/setup-tracing.sh || echo "tracing setup failed; tracing tests will say why they skip"; fi
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	@if [ "$$(id -u)" = 0 ]; then bash scripts/setup-tracing.sh || echo "tracing setup failed; the report will say tracing was skipped"; fi
	bash scripts/bench.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
