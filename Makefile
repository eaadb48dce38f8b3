# Red: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= $(HOME)/.cache/red/venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup demo test test-fast lint bench cluster-build clean

setup:
	@RED_VENV=$(VENV) scripts/bootstrap >/dev/null

demo: setup ## run the digits star federation on a local Ray
	$(VENV)/bin/red run examples/digits-star.yaml

test: setup cluster-build ## the whole suite: unit, engine on real Ray, operator on a real API server
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup ## unit tests only (no Ray, no cluster)
	$(PY) -m pytest -q -p no:cacheprovider -m "not ray and not cluster and not s3" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check red operator tests bench e2e e2e/build-tools
	$(VENV)/bin/mypy

cluster-build: setup ## build (or reuse from ~/.cache/red) the control plane, the real nodes and their images, chart tools
	@PYTHON=$(PY) e2e/prepare

bench: setup
	$(PY) bench/star_rounds.py
	$(PY) bench/broadcast.py
	$(PY) bench/operator_latency.py

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
