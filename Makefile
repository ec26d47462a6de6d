# One command each: `make demo` runs the main job, `make test` passes the tests.
# Both set up what is missing first: inside an active virtual environment they install
# into it; otherwise they create .venv here.

PYTHON ?= python3
VENV := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(CURDIR)/.venv)
BIN := $(VENV)/bin
STAMP := $(VENV)/.algoperf-installed
DEMO_DIR ?= experiments/demo

.PHONY: setup demo test lint bench deploy-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m algoperf.demo --experiment-dir $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest -q -n 2

lint: setup
	$(BIN)/ruff check algoperf workloads submissions tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run.py

# Builds the CPU image, brings up docker/compose.yml (PostgreSQL, MLflow, Ray head, one
# worker), runs campaigns through it from this machine, tears it down (docs/deployment.md,
# "Checking a deployment"). Needs root and a Docker engine (started if installed but not
# running); DEPLOY_CHECK_ARGS=--gpu also builds the CUDA image.
deploy-check: setup
	$(BIN)/python docker/deploy_check.py $(DEPLOY_CHECK_ARGS)

clean:
	rm -rf experiments test-output .pytest_cache
