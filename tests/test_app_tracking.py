"""MLflow tracking: where the store goes, how runs end, batching, lazy mlflow import."""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import experiment, run, tracking
from pipeline.config import Runtime
from tests.conftest import REPO, cli_env, compose, runs_of


def test_default_store_is_an_absolute_sqlite_path_under_the_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.resolve_uri(None) == f"sqlite:///{REPO / 'mlflow.db'}"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.resolve_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert tracking.artifact_location(f"sqlite:///{tmp_path}/mlflow.db", "my exp") == (
        (tmp_path / "mlruns" / "my_exp").as_uri())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_uri(None) == "http://127.0.0.1:5000"
    assert tracking.resolve_uri("http://h:1") == "http://h:1"
    assert tracking.artifact_location("http://h:1") is None


def test_only_tracking_imports_mlflow_and_only_inside_functions():
    for path in (REPO / "pipeline").rglob("*.py"):
        if path.name == "pyfunc_model.py":  # executed by MLflow, never imported by us
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                assert path.name == "tracking.py", path
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not any("mlflow" in ast.dump(n) for n in top), path
    code = ("import sys, pipeline.run, pipeline.config, pipeline.data, pipeline.tracking, "
            "pipeline.__main__; assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env=cli_env(), cwd=REPO)


def _status(store, run_id):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store).get_run(run_id)


@pytest.mark.parametrize("exc, status", [(ValueError("boom"), "FAILED"),
                                         (KeyboardInterrupt(), "KILLED"), (None, "FINISHED")])
def test_every_run_ends_with_its_true_status(store, exc, status):
    tr = tracking.Tracker(store, "t", "r", {"a": "b"})
    with pytest.raises(type(exc)) if exc else contextlib.nullcontext():
        with tr:
            tr.add_step(0, {"step/objective": 1.0})
            if exc:
                raise exc
    run_ = _status(store, tr.run_id)
    assert run_.info.status == status and run_.data.tags["a"] == "b"
    if isinstance(exc, ValueError):
        assert "boom" in run_.data.tags["error"]
        from mlflow.tracking import MlflowClient

        names = [a.path for a in MlflowClient(store).list_artifacts(tr.run_id)]
        assert "error.txt" in names


def test_per_step_metrics_are_sent_in_batches(store, monkeypatch):
    from mlflow.tracking import MlflowClient

    calls = []
    original = MlflowClient.log_batch

    def counting(self, run_id, metrics=(), **kw):
        calls.append(len(metrics))
        return original(self, run_id, metrics=metrics, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    with tracking.Tracker(store, "t", "r", {}) as tr:
        for i in range(1500):
            tr.add_step(i, {"step/objective": 1.0 / (i + 1), "step/data_loss": 0.5})
    assert sum(calls) == 3000 and len(calls) <= 6 and max(calls) <= 1000
    hist = MlflowClient(store).get_metric_history(tr.run_id, "step/objective")
    assert len(hist) == 1500 and sorted(h.step for h in hist) == list(range(1500))


@pytest.mark.parametrize("exc, status", [(ValueError("solver exploded"), "FAILED"),
                                         (KeyboardInterrupt(), "KILLED")])
def test_a_run_that_fails_after_it_started_ends_failed_or_killed(store, tmp_path, monkeypatch,
                                                                 exc, status):
    def broken(*a, **k):
        raise exc

    monkeypatch.setattr(experiment, "fit", broken)  # the one orchestration core fits
    config = compose(["dataset=iris", "model=softmax", f"tracking.uri={store}"])
    with pytest.raises(type(exc)):
        run.run(config, Runtime(output_dir=str(tmp_path)), quiet=True)
    (only,) = runs_of(store)
    assert only.info.status == status
    if status == "FAILED":
        assert "solver exploded" in only.data.tags["error"]


def test_bad_data_leaves_no_run(store, tmp_path):
    path = Path(tmp_path) / "d.csv"
    path.write_text("a,b,y\n1,2,0.5\n,3,1.5\n2,1,0.2\n")
    config = compose(["dataset=file", f"dataset.path={path}", "dataset.target=[y]",
                      "model=linear", f"tracking.uri={store}"])
    with pytest.raises(ValueError, match="NaN.*'a'|'a'.*NaN"):  # the column and the fault
        run.run(config, Runtime(output_dir=str(tmp_path)), quiet=True)
    assert runs_of(store) == []


def test_model_npz_holds_what_the_pyfunc_needs(tmp_path):
    import numpy as np

    from pipeline.data import Scaler

    sc = Scaler(keep=np.array([0, 2]), mean=np.zeros(2), scale=np.ones(2))
    path = tracking.save_model_npz(tmp_path / "m.npz", "multiclass", np.ones((2, 3)),
                                   np.zeros(3), sc, np.array(["a", "b", "c"], dtype=object),
                                   ["x", "y", "z"], ["t"])
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) >= {"W", "b", "keep", "mean", "scale", "classes", "task"}
        assert list(npz["classes"]) == ["a", "b", "c"]


def test_a_run_whose_last_metrics_cannot_be_sent_ends_failed_with_the_error(store, monkeypatch):
    from mlflow.tracking import MlflowClient

    tr = tracking.Tracker(store, "t", "r", {})
    with pytest.raises(OSError, match="disk full"):
        with tr:
            tr._last_flush = time.monotonic()  # not due: the value waits for the end
            tr.add_step(0, {"step/objective": 1.0})

            def full(*a, **k):
                raise OSError("disk full")

            monkeypatch.setattr(MlflowClient, "log_batch", full)
    run_ = _status(store, tr.run_id)
    assert run_.info.status == "FAILED" and "disk full" in run_.data.tags["error"]
