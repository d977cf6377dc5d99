"""Every model x reg runs end to end in-process (``run.run``) and logs what the issue lists."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from pipeline import run
from tests.conftest import compose

DATASET = {"linear": ["dataset=diabetes"], "logistic": ["dataset=breast_cancer"],
           "softmax": ["dataset=iris"], "ovr": ["dataset=wine"],
           "multilabel": ["dataset=synth_multilabel", "dataset.n=300", "dataset.k=6"]}
FINAL = {"linear": ["mse", "rmse", "mae", "r2"],
         "logistic": ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"],
         "softmax": ["accuracy", "macro_f1", "log_loss"], "ovr": ["accuracy", "macro_f1"],
         "multilabel": ["hamming_loss", "subset_accuracy", "micro_f1", "macro_f1"]}


def _run(store, tmp_path, overrides):
    from pipeline.config import Runtime

    config = compose([*overrides, f"tracking.uri={store}", "tracking.progress=false"])
    return run.run(config, Runtime(output_dir=str(tmp_path / "out")), quiet=True)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("reg", ["none", "l1", "l2", "elasticnet"])
@pytest.mark.parametrize("model", ["linear", "logistic", "softmax", "ovr", "multilabel"])
def test_every_model_and_reg_runs_end_to_end(store, tmp_path, model, reg):
    import mlflow
    from mlflow.tracking import MlflowClient

    res = _run(store, tmp_path, [f"model={model}", f"reg={reg}", *DATASET[model],
                                 "solver.max_iter=100", "reg.lam=0.01"])
    run_ = MlflowClient(store).get_run(res.run_id)
    assert run_.info.status == "FINISHED"
    for split in ("train", "val", "test"):
        for name in FINAL[model]:
            assert f"{split}/{name}" in run_.data.metrics, (split, name)
    for key in ("final_objective", "n_passes", "fit_time_s", "converged"):
        assert f"fit/{key}" in run_.data.metrics
    assert ("fit/nonzero_weights" in run_.data.metrics) == (reg in ("l1", "elasticnet"))
    assert run_.data.params["model.name"] == model and run_.data.params["reg.name"] == reg
    hist = MlflowClient(store).get_metric_history(res.run_id, "step/objective")
    assert len(hist) >= 1 and hist[-1].value == pytest.approx(res.fit.objective, rel=1e-9)
    # the numpy-only pyfunc predicts what the pipeline predicted on the test split
    model_ = mlflow.pyfunc.load_model(f"runs:/{res.run_id}/model")
    import pandas as pd

    X = pd.DataFrame(res.data.raw["test"], columns=res.data.feature_names)
    got = np.asarray(model_.predict(X))
    want = run.datamod.decode_targets(res.data, res.predictions["pred"])
    if model == "linear":
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    else:
        np.testing.assert_array_equal(got, want)


def test_l1_makes_weights_sparse_and_summary_names_the_run(store, tmp_path):
    res = _run(store, tmp_path, ["model=linear", "dataset=diabetes", "reg=l1", "reg.lam=0.5"])
    assert res.metrics["fit/nonzero_weights"] < res.metrics["fit/n_weights"]
    text = run.summary(res, compose(["model=linear", "dataset=diabetes", "reg=l1"]))
    assert res.run_id in text and "mlflow ui" in text and "test:" in text


def test_progress_logs_a_validation_score_when_the_core_passes_the_weights():
    from pipeline import data
    from pipeline.config import DatasetConfig

    d = data.load(DatasetConfig(name="iris", task="multiclass"), "softmax", 0)

    class Stub:
        steps: list = []

        def add_step(self, step, values):
            self.steps.append((step, values))

    stub = Stub()
    progress = run.Progress(stub, d, show=False)
    progress(1, 0.9, 0.8)  # the contract's (step, F, L)
    W, b = np.zeros((d.X["train"].shape[1], 3)), np.array([0.0, 5.0, 0.0])
    progress(2, 0.7, 0.6, W, b)  # a core that also passes W, b
    progress.close()
    assert stub.steps[0] == (1, {"step/objective": 0.9, "step/data_loss": 0.8})
    step, values = stub.steps[1]
    acc = np.mean(d.y["val"] == 1)
    assert step == 2 and values["step/val_accuracy"] == pytest.approx(acc)


class _Stream(io.StringIO):
    """A captured stderr that says whether it is a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_the_bar_is_drawn_on_a_terminal_only_and_has_no_max_iter_total(monkeypatch, tty):
    from pipeline import data
    from pipeline.config import DatasetConfig

    d = data.load(DatasetConfig(name="iris", task="multiclass"), "softmax", 0)

    class Stub:
        def add_step(self, step, values):
            pass

    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    progress = run.Progress(Stub(), d, show=True, tol=1e-7, max_iter=1000)
    for i in range(3):
        progress(i, 0.5 / (i + 1), 0.4)
    progress.bar.refresh()
    drawn = stream.getvalue()
    progress.close()
    if not tty:
        assert stream.getvalue() == ""  # a log file or a captured stream: no bar at all
        return
    for part in ("fit: 3 steps", "F=0.5", "tol=1e-07", "max 1000"):
        assert part in drawn, (part, drawn)
    assert "/1000" not in drawn and "%|" not in drawn  # no total, no percentage, no ETA


@pytest.mark.filterwarnings("ignore::UserWarning")  # 20 gd steps do not converge
def test_fit_time_excludes_numba_compiling_inside_the_solvers_window(monkeypatch):
    """A kernel compiled during the fit (here: a fresh jitted function the callback calls on
    its first step, so inside the solver's timed window) counts as compile time, not fit time."""
    import time

    import numba

    import pipeline
    from pipeline import data, experiment
    from pipeline.config import DatasetConfig

    d = data.load(DatasetConfig(name="iris", task="multiclass"), "softmax", 0)
    raw: list[float] = []
    core = pipeline.fit

    def recording(*args, **kwargs):
        res = core(*args, **kwargs)
        raw.append(res.time_s)
        return res

    monkeypatch.setattr(pipeline, "fit", recording)
    compiled: list[float] = []

    def callback(step, objective, loss, *rest):
        if not compiled:
            t = time.perf_counter()
            numba.njit(cache=False)(lambda x: x * 2.0 + 1.0)(np.ones(3))
            compiled.append(time.perf_counter() - t)

    config = compose(["model=softmax", "dataset=iris", "solver=gd", "solver.max_iter=20"])
    res = experiment.fit(config, d, callback)
    assert compiled and compiled[0] > 0.01
    assert res.compile_time_s >= 0.9 * compiled[0]
    assert raw[0] - res.time_s == pytest.approx(compiled[0], rel=0.1, abs=0.01)
    assert experiment.solver_facts(res, "l2")["fit/compile_time_s"] == res.compile_time_s
