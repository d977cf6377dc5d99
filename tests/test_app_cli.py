"""The real command line, ``python -m pipeline ...`` in a temporary folder, read back from MLflow.

Each process costs seconds, so these are few; the sweeps, the server and Ctrl-C are ``slow``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli_env, compose, runs_of

NO_NUMBA = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numba", "pipeline", "kernels", "sklearn"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import mlflow, numpy as np, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(f"runs:/{sys.argv[2]}/model")
with np.load(sys.argv[3], allow_pickle=False) as npz:
    X, want = npz["X_raw"], npz["y_pred"]
names = model.metadata.signature.inputs.input_names()
got = np.asarray(model.predict(pd.DataFrame(X, columns=names)))
assert np.array_equal(got, want), (got[:10], want[:10])
assert not [m for m in sys.modules if m.split(".")[0] in ("numba", "pipeline", "kernels")]
print("PYFUNC-OK", len(got))
"""


def test_logistic_l1_makes_one_finished_run_with_everything(cli, store, tmp_path):
    from mlflow.tracking import MlflowClient

    res = cli("model=logistic", "reg=l1", f"tracking.uri={store}")
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = runs_of(store)
    assert run.info.status == "FINISHED"
    assert run.info.run_id in res.stdout and "mlflow ui" in res.stdout
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert (p["model.name"], p["reg.name"]) == ("logistic", "l1")
    assert p["dataset.name"] == "breast_cancer"
    assert {"reg.lam", "solver.tol", "solver.max_iter", "tracking.experiment", "seed"} <= set(p)
    for split in ("train", "val", "test"):
        for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"):
            assert f"{split}/{k}" in m
    assert {f"fit/{k}" for k in ("nonzero_weights", "n_passes", "fit_time_s", "converged",
                                 "final_objective")} <= set(m)
    assert {"git.commit", "git.dirty", "dataset.name", "dataset.digest", "hydra.overrides",
            "solver.actual", "criterion"} <= set(t)
    assert "reg=l1" in t["hydra.overrides"]
    client = MlflowClient(store)
    hist = client.get_metric_history(run.info.run_id, "step/objective")
    assert len(hist) == int(m["fit/n_iter"]) > 1
    assert len(client.get_metric_history(run.info.run_id, "step/data_loss")) == len(hist)
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    files |= {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"config.yaml", "model.npz", "test_predictions.npz", "plots/objective.png",
            "plots/confusion_matrix.png", "plots/roc.png", "plots/coefficients.png"} <= files
    # each run writes under its own Hydra output folder
    assert list((tmp_path / "outputs").glob("*/*/model.npz"))
    # the pyfunc loads without numba (or the pipeline) and predicts exactly what the run did
    pred = client.download_artifacts(run.info.run_id, "test_predictions.npz", str(tmp_path))
    check = subprocess.run([sys.executable, "-c", NO_NUMBA, store, run.info.run_id, pred],
                           capture_output=True, text=True, env=cli_env(), cwd=tmp_path)
    assert "PYFUNC-OK" in check.stdout, check.stderr[-3000:]


BAD = [
    (["reg.lam=abc"], ["reg.lam", "abc"]),
    (["solver.bogus=1"], ["bogus"]),
    (["model=perceptron"], ["perceptron", "softmax"]),
    (["model=logistic", "dataset=diabetes"], ["model=logistic", "diabetes", "linear"]),
    (["solver=lbfgs", "reg=l1"], ["lbfgs", "l1", "agd"]),
    (["dataset=file", "dataset.path=big.csv", "dataset.target=[y]", "dataset.streaming=true"],
     ["dataset.streaming=true", "CSV", "Parquet"]),
]
BAD_DATA = [  # (column, target, model, words)
    ("nan", "y", "linear", ["'b'", "NaN"]),
    ("one", "k", "logistic", ["'k'", "one class"]),
    ("cont", "y", "logistic", ["'y'", "continuous"]),
]

# Command lines that must fail at start. A child each cost a Python start and the imports;
# one child runs them all instead, each as ``python -m pipeline`` runs (runpy on the package's
# __main__, a fresh Hydra), in its own folder, with its own store and its own stderr (fd 2).
FAILING = r"""
import pipeline  # first, as python -m pipeline: the pins before numpy
import json, os, runpy, sys, traceback
from hydra.core.global_hydra import GlobalHydra

codes = {}
for case in json.loads(sys.argv[1]):
    os.chdir(case["cwd"])
    sys.argv = ["pipeline", *case["args"]]
    sys.stderr.flush()
    saved = os.dup(2)
    with open("stderr.txt", "w") as err:
        os.dup2(err.fileno(), 2)
        try:
            runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
            codes[case["id"]] = 0
        except SystemExit as stop:
            codes[case["id"]] = stop.code
        except BaseException:
            traceback.print_exc()
            codes[case["id"]] = "raised"
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
    GlobalHydra.instance().clear()
print(json.dumps(codes))
"""


def _bad_frame(column: str):
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((50, 2)), columns=["a", "b"])
    frame["y"], frame["k"] = frame.a * 2.5, 1
    if column == "nan":
        frame.loc[3, "b"] = np.nan
    return frame


@pytest.fixture(scope="module")
def failed_at_start(tmp_path_factory, migrated_store) -> dict[str, tuple[object, str, str]]:
    """Every case of BAD and BAD_DATA run once: id -> (exit code, stderr, store URI)."""
    import shutil

    base = tmp_path_factory.mktemp("failing")
    cases = []
    runs = [(" ".join(args), list(args)) for args, _ in BAD]
    for column, target, model, _ in BAD_DATA:
        folder = base / f"data-{column}"
        folder.mkdir()
        _bad_frame(column).to_parquet(folder / "d.parquet")
        runs.append((f"data-{column}", ["dataset=file", f"dataset.path={folder / 'd.parquet'}",
                                        f"dataset.target=[{target}]", f"model={model}"]))
    for i, (key, args) in enumerate(runs):
        folder = base / f"case{i}"
        folder.mkdir()
        shutil.copy(migrated_store, folder / "mlflow.db")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        cases.append({"id": key, "cwd": str(folder), "args": [*args, f"tracking.uri={uri}"],
                      "uri": uri})
    proc = subprocess.run([sys.executable, "-c", FAILING, json.dumps(cases)], cwd=base,
                          env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    return {c["id"]: (codes[c["id"]], (Path(c["cwd"]) / "stderr.txt").read_text(), c["uri"])
            for c in cases}


@pytest.mark.parametrize("args, words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_fails_at_start_with_its_message_and_no_run(failed_at_start, args, words):
    code, stderr, store = failed_at_start[" ".join(args)]
    assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
    for w in words:
        assert w in stderr, (w, stderr[-2000:])
    assert not [r for r in runs_of(store) if r.info.status == "RUNNING"]
    assert runs_of(store) == []


@pytest.mark.parametrize("column, target, model, words", BAD_DATA)
def test_bad_data_in_a_user_file_names_the_column(failed_at_start, column, target, model, words):
    code, stderr, store = failed_at_start[f"data-{column}"]
    assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
    for w in words:
        assert w in stderr, (w, stderr[-2000:])
    assert runs_of(store) == []


def _sweep_checks(uri: str, tmp_path: Path, n_jobs: int = 6):
    runs = runs_of(uri)
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == n_jobs and len(runs) == n_jobs + 1
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    combos = {(c.data.params["model.name"], c.data.params["reg.name"]) for c in children}
    assert len(combos) == n_jobs
    jobs = [p for p in (tmp_path / "multirun").glob("*/*/*") if p.is_dir()]
    assert len(jobs) == n_jobs and all((j / "model.npz").exists() for j in jobs)


SWEEP = ["-m", "model=logistic,softmax", "reg=none,l1,l2", "reg.lam=1e-2",
         "solver.max_iter=200", "tracking.progress=false"]


@pytest.mark.slow
def test_multirun_makes_one_parent_and_six_children(cli, store, tmp_path):
    res = cli(*SWEEP, f"tracking.uri={store}")
    assert res.returncode == 0, res.stderr[-3000:]
    _sweep_checks(store, tmp_path)


@pytest.mark.slow
def test_joblib_multirun_on_a_fresh_store(cli, tmp_path):
    """Two jobs, one per joblib worker, both starting at once on a store nobody has created
    yet; the six-job sweep's parent and children are checked above (the basic launcher)."""
    fresh = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    sweep = ["-m", "model=logistic,softmax", "reg=l1", *SWEEP[3:]]
    res = cli(*sweep, f"tracking.uri={fresh}", "hydra/launcher=joblib",
              "hydra.launcher.n_jobs=2", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    _sweep_checks(fresh, tmp_path, n_jobs=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_mlflow_server_lists_runs_and_metric_histories(cli, store, tmp_path):
    from pipeline import run
    from pipeline.config import Runtime

    # a run already in the store (written in-process: the command line is the second run's)
    config = compose(["dataset=iris", "model=softmax", f"tracking.uri={store}",
                      "tracking.progress=false"])
    run.run(config, Runtime(output_dir=str(tmp_path / "first")), quiet=True)
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", store, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--artifacts-destination", str(tmp_path / "served")],
        # no job runner (MLflow's GenAI jobs, unused here): one process less, and it held the
        # server's exit for 10 s or more after SIGTERM
        cwd=tmp_path, env=cli_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        # a run through the server (remote tracking URI)
        second = cli("dataset=breast_cancer", "model=logistic", "reg=l1",
                     "tracking.log_model=false", f"tracking.uri={base}")
        assert second.returncode == 0, second.stderr[-3000:]
        exps = _get(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 100})
        exp = [e for e in exps["experiments"] if e["name"] == "linear-models"][0]
        found = _get(f"{base}/api/2.0/mlflow/runs/search",
                     {"experiment_ids": [exp["experiment_id"]]})["runs"]
        assert len(found) == 2 and all(r["info"]["status"] == "FINISHED" for r in found)
        for r in found:
            hist = _get(f"{base}/api/2.0/mlflow/metrics/get-history?run_id="
                        f"{r['info']['run_id']}&metric_key=step%2Fobjective")
            assert len(hist["metrics"]) > 1
    finally:
        server.terminate()
        server.wait(timeout=30)


# Ctrl-C and SIGTERM during a fit (the run ends KILLED, one line, exit 130 / 143):
# tests/test_run_status.py, for the CLI, a sweep and the DVC train stage.
