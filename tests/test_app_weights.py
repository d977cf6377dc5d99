"""Weights in the app: ``dataset.weight_column`` (a file's row weights) and ``model.class_weight``.

In-process (config load, ``data.load``, ``experiment.fit`` / ``evaluate``) against the core's own
``pipeline.fit`` / ``pipeline.cv`` and scikit-learn's weighted metrics; one CLI run end to end.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import pipeline
from pipeline import config as cfgmod
from pipeline import data, experiment, metrics
from pipeline import run as runmod
from tests.conftest import compose, runs_of


def _frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Four features, an imbalanced text label, row weights (some 0) and a text column."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({f"x{j}": rng.standard_normal(n) for j in range(4)})
    z = f.x0 - 0.7 * f.x1 + 0.8 * rng.standard_normal(n)
    f["y"] = np.where(z > 0.6, "spam", "ham")
    f["w"] = rng.choice([0.0, 0.5, 1.0, 2.0, 4.0], n, p=[0.05, 0.25, 0.3, 0.25, 0.15])
    f["note"] = rng.choice(["a", "b"], n)
    return f


def _csv(tmp_path, frame: pd.DataFrame, name: str = "mail.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _config(path: str, *extra: str) -> cfgmod.Config:
    return compose(["dataset=file", f"dataset.path={path}", "dataset.target=[y]",
                    "dataset.features=[x0,x1,x2,x3]", "dataset.weight_column=w",
                    "model=logistic", "reg=l2", "reg.lam=0.01", *extra])


def _load(config: cfgmod.Config) -> data.Dataset:
    return data.load(config.dataset, config.model.name, config.seed, config.model.class_weight)


def _core_fit(config: cfgmod.Config, X, y, **weights):
    return pipeline.fit(X, y, model=config.model.name, reg=config.reg.name, lam=config.reg.lam,
                        solver=config.solver.name, tol=config.solver.tol,
                        max_iter=config.solver.max_iter, seed=config.seed, **weights)


def test_weight_column_is_no_feature_and_is_split_with_its_rows(tmp_path):
    frame = _frame()
    path = _csv(tmp_path, frame)
    d = _load(_config(path))
    assert d.feature_names == ["x0", "x1", "x2", "x3"] and d.X["train"].shape[1] == 4
    assert d.weights is not None
    by_x0 = dict(zip(pd.read_csv(path).x0, pd.read_csv(path).w, strict=True))  # x0 is unique
    for split in ("train", "val", "test"):
        assert len(d.weights[split]) == len(d.y[split]) > 0
        assert np.array_equal(d.weights[split], [by_x0[v] for v in d.raw[split][:, 0]])
    # every other column is a feature by default, but the weight column never is
    d_all = data.load(dataclasses.replace(d_cfg := _config(path).dataset, features=None,
                                          categorical="auto"), "logistic", 0)
    assert "w" not in d_all.feature_names and "x0" in d_all.feature_names
    # the weights are part of the data: another weight column, another digest
    frame.loc[0, "w"] = 3.0
    d2 = data.load(dataclasses.replace(d_cfg, path=_csv(tmp_path, frame, "m2.csv")),
                   "logistic", 0)
    assert d2.digest != d.digest and np.array_equal(d2.X["train"], d.X["train"])


def test_fit_is_the_core_fit_on_the_training_split_with_its_weights(tmp_path):
    path = _csv(tmp_path, _frame())
    config = _config(path)
    d = _load(config)
    assert d.weights is not None
    got = experiment.fit(config, d, None)
    ref = _core_fit(config, d.X["train"], d.y["train"], sample_weight=d.weights["train"])
    assert np.array_equal(got.W, ref.W) and np.array_equal(got.b, ref.b)
    plain = _core_fit(config, d.X["train"], d.y["train"])
    assert not np.allclose(got.W, plain.W, rtol=1e-3)
    # class weights: "balanced" and a map by the file's labels, times the row weights
    for value, core in [("balanced", "balanced"), ("{spam: 5.0}", {"spam": 5.0})]:
        cw_config = _config(path, f"model.class_weight={value}")
        d = _load(cw_config)
        got = experiment.fit(cw_config, d, None)
        ref = _core_fit(cw_config, d.X["train"], d.y_original("train"),  # "ham" / "spam"
                        sample_weight=d.weights["train"], class_weight=core)
        assert np.array_equal(got.W, ref.W) and np.array_equal(got.b, ref.b), value


def test_search_cv_passes_the_weights_to_the_core(tmp_path):
    config = _config(_csv(tmp_path, _frame()), "model.class_weight=balanced", "search=cv",
                     "search.n_lams=4", "search.folds=3")
    d = _load(config)
    assert d.weights is not None
    got = experiment.fit(config, d, None)
    ref = pipeline.cv(d.X["train"], d.y["train"], model="logistic", reg="l2", folds=3, n_lams=4,
                      solver=config.solver.name, tol=config.solver.tol,
                      max_iter=config.solver.max_iter, seed=config.seed,
                      sample_weight=d.weights["train"],
                      class_weight="balanced")
    assert got.search.lam == ref.lam and np.array_equal(got.search.score, ref.mean)
    assert np.array_equal(got.W, ref.fit.W)


def test_weighted_scores_equal_scikit_learns_and_differ_from_unweighted(tmp_path):
    from sklearn import metrics as skm

    config = _config(_csv(tmp_path, _frame(n=400)))
    d = _load(config)
    assert d.weights is not None
    result = experiment.fit(config, d, None)
    weighted, test = experiment.evaluate(result, d)
    plain, _ = experiment.evaluate(result, dataclasses.replace(d, weights=None))
    y, w, P = d.y["test"], d.weights["test"], test["proba"]
    pred = test["pred"]
    ref = {"accuracy": skm.accuracy_score(y, pred, sample_weight=w),
           "precision": skm.precision_score(y, pred, sample_weight=w),
           "recall": skm.recall_score(y, pred, sample_weight=w),
           "f1": skm.f1_score(y, pred, sample_weight=w),
           "log_loss": skm.log_loss(y, P, sample_weight=w),
           "roc_auc": skm.roc_auc_score(y, P[:, 1], sample_weight=w)}
    assert {k[5:]: v for k, v in weighted.items() if k.startswith("test/")} == pytest.approx(
        ref, rel=1e-12)
    assert weighted["test/log_loss"] != plain["test/log_loss"]
    assert weighted["val/roc_auc"] != plain["val/roc_auc"]


def test_weighted_metrics_of_every_task_equal_scikit_learns():
    from sklearn import metrics as skm

    rng = np.random.default_rng(1)
    w = rng.choice([0.0, 0.5, 1.0, 3.0], 300)
    y = rng.integers(0, 4, 300)
    P = rng.random((300, 4))
    P /= P.sum(axis=1, keepdims=True)
    pred = P.argmax(1)
    assert metrics.multiclass(y, pred, P, w) == pytest.approx({
        "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
        "macro_f1": skm.f1_score(y, pred, average="macro", sample_weight=w),
        "log_loss": skm.log_loss(y, P, sample_weight=w)}, rel=1e-12)
    Y, Q = rng.integers(0, 2, (300, 3)), rng.integers(0, 2, (300, 3))
    assert metrics.multilabel(Y, Q, w) == pytest.approx({
        "hamming_loss": skm.hamming_loss(Y, Q, sample_weight=w),
        "subset_accuracy": skm.accuracy_score(Y, Q, sample_weight=w),
        "micro_f1": skm.f1_score(Y, Q, average="micro", sample_weight=w),
        "macro_f1": skm.f1_score(Y, Q, average="macro", sample_weight=w)}, rel=1e-12)
    T = rng.random((300, 2))
    R = T + 0.1 * rng.random((300, 2))
    mse = skm.mean_squared_error(T, R, sample_weight=w)
    assert metrics.regression(T, R, w) == pytest.approx({
        "mse": mse, "rmse": np.sqrt(mse), "mae": skm.mean_absolute_error(T, R, sample_weight=w),
        "r2": skm.r2_score(T, R, sample_weight=w)}, rel=1e-12)
    s = np.round(rng.random(300), 1)  # ties: the weighted AUC counts them half
    yb = rng.integers(0, 2, 300)
    assert metrics.roc_auc(yb, s, w) == pytest.approx(skm.roc_auc_score(yb, s, sample_weight=w),
                                                      rel=1e-12)
    assert metrics.roc_auc(yb, s, np.ones(300)) == pytest.approx(metrics.roc_auc(yb, s),
                                                                 rel=1e-12)


@pytest.mark.parametrize("change, words", [
    (lambda f: f.assign(w=f.w.where(f.index % 50 != 3, -1.0)), ["'w'", "5 negative entries"]),
    (lambda f: f.assign(w=f.w.where(f.index % 60 != 7, np.nan)), ["'w'", "missing values",
                                                                   "4 of 240 rows"]),
    (lambda f: f.assign(w=f.w.where(f.index != 8, np.inf)), ["'w'", "1 non-finite entry",
                                                             "row 8"]),
    (lambda f: f.assign(w=f.note), ["'w'", "not numeric"]),
    (lambda f: f.drop(columns="w"), ["'w'", "dataset.weight_column", "is not in mail.csv"]),
    (lambda f: f.assign(w=0.0), ["'w'", "for every row", "positive weight"]),
])
def test_a_bad_weight_column_is_a_data_error_naming_it(tmp_path, change, words):
    config = _config(_csv(tmp_path, change(_frame())))
    with pytest.raises(data.DataError) as err:
        _load(config)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_bad_weights_end_before_any_run_opens(tmp_path, store):
    frame = _frame()
    frame.loc[3, "w"] = -2.0
    config = _config(_csv(tmp_path, frame), f"tracking.uri={store}")
    with pytest.raises(data.DataError, match="negative"):
        runmod.run(config, quiet=True)
    assert runs_of(store) == []


@pytest.mark.parametrize("overrides, words", [
    (["model=linear", "dataset=diabetes", "model.class_weight=balanced"],
     ["model=linear has no classes", "dataset.weight_column", "sample_weight"]),
    (["model=multilabel", "dataset=multilabel", "model.class_weight={1: 2.0}"],
     ["model=multilabel has no classes", "dataset.weight_column"]),
    (["model.class_weight=heavy"], ["'heavy'", "balanced", "{label: weight}"]),
    (["model.class_weight={1: -2.0}"], ["model.class_weight[1]", ">= 0"]),
    (["dataset.weight_column=w"], ["dataset=file", "dataset=breast_cancer has none",
                                   "drop dataset.weight_column"]),
    (["dataset=file", "dataset.path=x.csv", "dataset.target=[y]", "dataset.weight_column=y"],
     ["also a target"]),
])
def test_weights_where_they_do_not_apply_are_config_errors(overrides, words):
    with pytest.raises(cfgmod.ConfigError) as err:
        compose(overrides)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_class_weight_labels_are_checked_against_the_data(tmp_path):
    path = _csv(tmp_path, _frame())
    with pytest.raises(data.DataError, match=r"'eggs'.*its classes: ham, spam"):
        _load(_config(path, "model.class_weight={eggs: 2.0}"))
    d = _load(_config(path, "model.class_weight={spam: 2.0}"))
    assert data.class_weight_codes(d, {"spam": 2.0}) == {1: 2.0}
    d = data.load(cfgmod.DatasetConfig(name="iris", task="multiclass"), "softmax", 0)
    assert data.class_weight_codes(d, {2: 3.0, "0": 0.5}) == {2: 3.0, 0: 0.5}  # 0, 1, 2


def test_prepared_data_without_the_weights_stop_the_fit(tmp_path):
    """Data without the weights the config names (a data/prepared/ written before the
    prepare stage kept them): training from them must fail, not quietly fit unweighted."""
    config = _config(_csv(tmp_path, _frame()))
    d = dataclasses.replace(_load(config), weights=None)
    with pytest.raises(data.DataError, match="carry no row weights"):
        experiment.fit(config, d, None)


def test_cli_run_with_a_weight_column_and_class_weights(cli, store, tmp_path):
    path = _csv(tmp_path, _frame())
    args = ["dataset=file", f"dataset.path={path}", "dataset.target=[y]",
            "dataset.features=[x0,x1,x2,x3]", "dataset.weight_column=w", "model=logistic",
            "model.class_weight={spam: 5.0}", f"tracking.uri={store}",
            "tracking.log_plots=false", "tracking.log_model=false"]
    ok = cli(*args)
    assert ok.returncode == 0, ok.stderr[-3000:]
    (r,) = runs_of(store)
    p, m = r.data.params, r.data.metrics
    assert r.info.status == "FINISHED"
    assert p["dataset.weight_column"] == "w" and p["model.class_weight"] == "{spam: 5.0}"
    assert p["data.weighted"] == "true"
    config = _config(path, "model.class_weight={spam: 5.0}")  # the same run, in-process
    d = _load(config)
    scores, _ = experiment.evaluate(experiment.fit(config, d, None), d)
    assert {k: m[k] for k in scores} == scores
    assert r.data.tags["dataset.digest"] == d.digest
