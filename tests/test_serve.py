"""The served model: class probabilities through the pyfunc's params, and a real
``mlflow models serve`` answering the README's request (127.0.0.1 only, stopped by pid)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import run
from pipeline.config import Runtime
from tests.conftest import REPO, cli_env, compose

CLASSIFIERS = {"logistic": ["dataset=breast_cancer"], "softmax": ["dataset=iris"],
               "ovr": ["dataset=wine"],
               "multilabel": ["dataset=synth_multilabel", "dataset.n=200", "dataset.k=5"]}


def _run(store: str, tmp_path: Path, overrides: list[str]):
    config = compose([*overrides, f"tracking.uri={store}", "tracking.progress=false",
                      "tracking.log_plots=false", "solver.max_iter=200"])
    return run.run(config, Runtime(output_dir=str(tmp_path / "out")), quiet=True)


def _loaded(res):
    import mlflow

    mlflow.set_tracking_uri(res.uri)
    return mlflow.pyfunc.load_model(f"runs:/{res.run_id}/model")


@pytest.mark.parametrize("model", sorted(CLASSIFIERS))
def test_every_classifier_gives_probabilities_through_load_model(store, tmp_path, model):
    import pipeline

    res = _run(store, tmp_path, [f"model={model}", *CLASSIFIERS[model]])
    served = _loaded(res)
    params = served.metadata.get_params_schema().to_dict()
    assert params == [{"name": "predict_proba", "type": "boolean", "default": False,
                       "shape": None}]
    X = pd.DataFrame(res.data.raw["test"], columns=res.data.feature_names)
    P = served.predict(X, params={"predict_proba": True})
    want = pipeline.predict_proba(res.fit, res.data.X["test"])
    assert isinstance(P, pd.DataFrame) and P.shape == want.shape == (len(X), want.shape[1])
    np.testing.assert_allclose(P.to_numpy(), want, rtol=1e-9, atol=1e-12)
    labels = served.predict(X)  # the default (false): what the pipeline predicted
    if model == "multilabel":
        assert list(P.columns) == res.data.target_names
        np.testing.assert_array_equal(np.asarray(labels), (P.to_numpy() > 0.5).astype(int))
    else:
        assert list(P.columns) == [str(c) for c in res.fit.classes]
        np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
        best = np.asarray(P.columns)[P.to_numpy().argmax(axis=1)]
        np.testing.assert_array_equal(best, np.asarray(labels).astype(str))


def test_a_regression_model_refuses_probabilities(store, tmp_path):
    res = _run(store, tmp_path, ["model=linear", "dataset=diabetes"])
    served = _loaded(res)
    X = pd.DataFrame(res.data.raw["test"][:3], columns=res.data.feature_names)
    with pytest.raises(Exception, match="predict_proba needs a classifier"):
        served.predict(X, params={"predict_proba": True})
    assert np.asarray(served.predict(X)).shape == (3,)


def readme_request() -> dict:
    """The body of the README's ``curl ... -d '<body>'`` serving example."""
    text = (REPO / "README.md").read_text()
    section = text.split("#### Serving the model", 1)[1]
    found = re.search(r"/invocations.*?-d '(\{.*?\})'", section, re.DOTALL)
    assert found, "the README's serving example has no curl -d '<json>' request"
    return json.loads(found.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.loads(answer.read())


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn's workers too), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.mark.slow
def test_the_served_model_answers_the_readme_request(store, tmp_path):
    """What the README tells a user to run: the iris softmax model served from the venv."""
    res = _run(store, tmp_path, ["model=softmax", "dataset=iris"])
    body = readme_request()
    assert body["params"] == {"predict_proba": True}
    columns = body["dataframe_split"]["columns"]
    assert columns == res.data.feature_names
    port = _free_port()
    venv_bin = str(Path(sys.executable).parent)  # mlflow starts uvicorn from PATH
    env = cli_env(MLFLOW_TRACKING_URI=res.uri, PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(Path(venv_bin) / "mlflow"), "models", "serve", "-m", f"runs:/{res.run_id}/model",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the server did not start:\n"
                                + (tmp_path / "serve.log").read_text()[-3000:])
                time.sleep(0.5)
        X = pd.DataFrame(body["dataframe_split"]["data"], columns=columns)
        local = _loaded(res)
        got = pd.DataFrame(_post(f"{base}/invocations", body)["predictions"])
        want = local.predict(X, params={"predict_proba": True})
        assert list(got.columns) == list(want.columns) == ["0", "1", "2"]
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)
        labels = _post(f"{base}/invocations", {"dataframe_split": body["dataframe_split"]})
        assert labels["predictions"] == np.asarray(local.predict(X)).tolist()
        assert len(set(labels["predictions"])) > 1  # the README's rows are of several classes
    finally:
        _stop(proc)
        log.close()
    assert proc.poll() is not None
