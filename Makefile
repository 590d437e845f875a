# Quick start: `make run` runs the agent on its embedded default pipeline; `make test` runs the whole suite.
VENV   ?= .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/agent run

# The real Prometheus and node exporter the integration tests start on loopback ports (Debian packages;
# CI runs as root). Their services are stopped again if the package scripts started them.
PEERS := /usr/bin/prometheus /usr/bin/prometheus-node-exporter
SUDO  := $(if $(filter 0,$(shell id -u)),,sudo)

$(PEERS) &:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		prometheus prometheus-node-exporter
	$(SUDO) invoke-rc.d prometheus stop 2>/dev/null || true
	$(SUDO) invoke-rc.d prometheus-node-exporter stop 2>/dev/null || true

test: $(STAMP) $(PEERS)
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check agent tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/agent bench

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
