# Two entry points: `make demo` (set up, write the demo's archive, run the daily job) and
# `make test` (set up, then lint and test). Both create or reuse .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gsm3-installed

.PHONY: demo serve test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# A CPU build of torch first, or pip would pull a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,cluster]'
	touch $(STAMP)

# The demo's inputs are a local archive in the providers' formats that the synthetic world
# writes once (resumable); the run then takes the production path through the real readers.
demo: $(STAMP)
	$(BIN)/gsm3-ops world
	$(BIN)/gsm3-ops run

# The read-only service and web map over what `make demo` published: http://127.0.0.1:8080/
serve: $(STAMP)
	$(BIN)/gsm3-ops serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf gsm3-demo .pytest_cache .ruff_cache
