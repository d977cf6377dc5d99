# Every target bootstraps .venv itself: `make test` / `make run` work on a fresh clone.
# .venv holds exactly the versions in uv.lock (with their hashes); `make lock` rewrites uv.lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0
# uv: the project's .venv, this machine's python3 (never a downloaded one), copies rather than
# hard links (its cache may lie on another file system).
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: setup lock run repro test lint bench bench-peers bench-paths bench-startup clean

setup: $(STAMP)

# uv itself (and pip), at the version and hashes uv.lock records for them (`make lock` writes
# requirements-bootstrap.txt from uv.lock).
$(UV): requirements-bootstrap.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements-bootstrap.txt
	touch $(UV)

# --locked: stop with an error if uv.lock no longer matches pyproject.toml (run `make lock`).
# The cuda extra is locked too but not installed here (`uv sync --locked --extra dev --extra cuda`).
$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --extra dev --extra dask --extra zarr
	touch $(STAMP)

# Re-resolve after a change to pyproject.toml, keeping every locked version that still fits;
# `make lock UPGRADE=--upgrade` (or UPGRADE="--upgrade-package numba") moves versions on.
lock: $(UV)
	$(UV) lock $(UPGRADE)
	$(UV) export -q --frozen --only-group tools --no-emit-project --format requirements-txt \
		-o requirements-bootstrap.txt

run: $(STAMP)
	$(BIN)/python -m pipeline

# The DVC pipeline with the venv's python on PATH (the stages call `python -m pipeline.stages`).
repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/solvers.py

# The peers of bench/scale.py and bench/paths.py (dask-ml, glum) join the environment.
bench-peers: $(STAMP)
	$(UV) sync --locked --extra dev --extra dask --extra zarr --extra bench

bench-paths: bench-peers
	$(BIN)/python bench/paths.py

clean:
	rm -rf $(VENV) mlruns mlflow.db outputs multirun .pytest_cache
