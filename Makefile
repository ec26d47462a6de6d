# One command each: `make demo` runs the main job, `make test` passes the fast tests
# (every README claim; goal: under 8 min on 2 cores; measured: README, Development), `make test-all` every test, the slow
# tier too (training to target, cluster kill/resume, full-size compiles, docker).
# Both set up what is missing first: inside an active virtual environment they install
# into it; otherwise they create .venv here.

PYTHON ?= python3
VENV := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(CURDIR)/.venv)
BIN := $(VENV)/bin
STAMP := $(VENV)/.algoperf-installed
DEMO_DIR ?= experiments/demo

.PHONY: setup demo test test-all test-slow test-compat lint bench deploy-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,v05,search]"  # v05, search: their tests run too
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m algoperf.demo --experiment-dir $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not slow" --durations=25

test-all: setup
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# The slow tier alone (CI runs it after `make test`, so no test runs twice).
test-slow: setup
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m slow --durations=15

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

# The submission-compatibility tests under AlgoPerf v0.6's pinned jax/flax/optax, in a
# second environment (.venv-v06) beside the main one.
VENV06 := $(CURDIR)/.venv-v06
$(VENV06)/.algoperf-installed: pyproject.toml setup.py constraints/algoperf-v0.6.txt
	@test -x $(VENV06)/bin/python || $(PYTHON) -m venv $(VENV06)
	$(VENV06)/bin/python -m pip install --quiet --upgrade pip
	$(VENV06)/bin/python -m pip install --quiet -c constraints/algoperf-v0.6.txt -e ".[dev,v05,search]"
	@touch $@

test-compat: $(VENV06)/.algoperf-installed
	$(VENV06)/bin/python -c "import jax, flax, optax; print('pinned:', 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__)"
	$(VENV06)/bin/python -m pytest -q -n 2 -m compat
