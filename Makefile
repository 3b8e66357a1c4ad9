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

.PHONY: setup setup-lab setup-system setup-tracing test bench clean

setup: $(STAMP)

# Reinstall when the package metadata changes; editable install keeps the code live.
# The C source too: the editable install builds the native hot path (aggregator/_hotpath*.so) once.
$(STAMP): pyproject.toml aggregator/native/hotpath.c
	@PYTHON=$(PYTHON) bash scripts/setup-system.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@$(PY) -c 'from aggregator import hotpath; print("setup: aggregator hot path:", hotpath.describe())'
	@touch $(STAMP)

setup-tracing:
	@bash scripts/setup-tracing.sh

# As root, also install what the lab needs from Debian (bpftrace, bcc, headers; syslog-ng;
# nats-server for shipping beyond one machine; ripgrep for the query agent). Each
# script is quick when everything is there, and says why when it cannot install.
setup-lab: setup
	@if [ "$$(id -u)" = 0 ]; then bash scripts/setup-tracing.sh || echo "tracing setup failed: tracing will be reported as skipped, with the reason"; fi
	@bash scripts/setup-peer.sh
	@bash scripts/setup-nats.sh
	@bash scripts/setup-query.sh

test: setup-lab
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup-lab
	bash scripts/bench.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis aggregator/_hotpath*.so
