"""Shared fixtures of the experiment-app tests: a pre-migrated MLflow store, the CLI, compose.

A fresh SQLite store costs seconds to migrate, so one is migrated once per test run (session
scope; under xdist the first worker migrates it and the others wait for it and use it) and every
test gets its own copy: tests never share or race on a store and nothing is written into the
repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Before anything loads numpy: the CPU-dispatch pins of ``pipeline._portable``, so the
# test process computes what ``python -m pipeline``, its worker processes (dask, loky) and
# other machines compute. Imported after numpy, the pins would reach only the child
# processes, and a parent/child comparison would fail on BLAS rounding.
import pipeline._portable  # noqa: F401, I001

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# The files that take longest (per-file sums of ``--durations=0`` of a full ``-n 2 --dist
# loadfile`` run), longest first; every other file follows in collection order. xdist's
# default starts the files with the most tests first, which left test_dvc.py and
# test_portable_bits.py (few tests, a minute or more each) for the end of one worker while the
# other had nothing left to do. Only the order of whole files changes.
LONGEST_FIRST = ("test_dvc.py", "test_solvers.py", "test_app_cli.py", "test_estimators.py",
                 "test_sparse.py", "test_run_status.py", "test_hard_data.py",
                 "test_bad_inputs.py", "test_dask.py", "test_portable_bits.py", "test_seam.py")


def pytest_configure(config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's --dist loadfile / loadscope
        config.option.loadscopereorder = False  # keep the order of pytest_collection_modifyitems


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: within a file


def _migrate(path: Path) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{path}").search_experiments()


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty, fully migrated SQLite store, read only by copying (one per test run).

    xdist workers of one run share the parent of their base temp folder: the first to get
    the lock migrates the store there, the others wait on the lock and find it done.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.mktemp("store") / "mlflow.db"
        _migrate(path)
        return path
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent / "migrated-store"
    shared.mkdir(exist_ok=True)
    path = shared / "mlflow.db"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not path.exists():
            part = shared / "part" / "mlflow.db"  # a worker that failed may have left one
            shutil.rmtree(part.parent, ignore_errors=True)
            part.parent.mkdir()
            _migrate(part)
            os.replace(part, path)
    return path


@pytest.fixture
def store(tmp_path, migrated_store) -> str:
    """A private copy of the migrated store in ``tmp_path``; returns its tracking URI."""
    db = tmp_path / "mlflow.db"
    shutil.copy(migrated_store, db)
    return f"sqlite:///{db}"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PYTHONPATH=str(REPO), HYDRA_FULL_ERROR="0", PYTHONHASHSEED="0", **extra)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **env: str):
    """``python -m pipeline *args`` in ``cwd``; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path):
    """Run the real command line in ``tmp_path``."""
    def _cli(*args: str, timeout: float = 300, **env: str):
        return run_cli(list(args), tmp_path, timeout, **env)
    return _cli


def compose(overrides: list[str] | None = None):
    """The app's config for ``overrides``, composed from conf/ in-process (no subprocess)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from pipeline import config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    return config.load(cfg)[0]


def runs_of(uri: str, experiment: str = "linear-models"):
    """All runs of ``experiment`` in the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=1000)
