"""Datasets: bundled sets equal scikit-learn's, seeded stratified splits, train-only scaling,
clear errors for data that cannot fit the model, numpy metrics equal to scikit-learn's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import config as cfgmod
from pipeline import data, metrics

TASK = {"breast_cancer": ("binary", "logistic"), "iris": ("multiclass", "softmax"),
        "wine": ("multiclass", "ovr"), "digits": ("multiclass", "softmax"),
        "diabetes": ("regression", "linear"), "multilabel": ("multilabel", "multilabel")}


def _load(name: str, model: str | None = None, seed: int = 0) -> data.Dataset:
    task, default = TASK[name]
    return data.load(cfgmod.DatasetConfig(name=name, task=task), model or default, seed)


@pytest.mark.parametrize("name", ["breast_cancer", "iris", "wine", "digits", "diabetes"])
def test_bundled_sets_equal_scikit_learns(name):
    from sklearn import datasets

    kwargs = {"scaled": False} if name == "diabetes" else {}
    ref = getattr(datasets, f"load_{name}")(**kwargs)
    d = _load(name)
    X = np.concatenate([d.raw[s] for s in ("train", "val", "test")])
    assert X.shape == ref.data.shape
    assert np.allclose(np.sort(X, axis=0), np.sort(ref.data, axis=0))
    if name in ("iris", "wine", "breast_cancer"):
        assert d.feature_names == list(ref.feature_names)


def test_multilabel_set_is_deterministic_with_both_values_in_every_label():
    a, b = _load("multilabel"), _load("multilabel")
    assert a.digest == b.digest and a.y["train"].shape[1] == 4
    assert set(np.unique(a.y["train"])) == {0.0, 1.0}


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "wine"])
def test_split_is_seeded_disjoint_and_stratified(name):
    a, b, c = _load(name, seed=0), _load(name, seed=0), _load(name, seed=1)
    assert np.array_equal(a.raw["test"], b.raw["test"])
    assert not np.array_equal(a.raw["test"], c.raw["test"])
    n = sum(len(a.y[s]) for s in ("train", "val", "test"))
    assert abs(len(a.y["test"]) / n - 0.2) < 0.02 and abs(len(a.y["val"]) / n - 0.2) < 0.02
    rows = {tuple(r) for s in ("train", "val", "test") for r in a.raw[s]}
    assert len(rows) == len({tuple(r) for r in np.concatenate(list(a.raw.values()))})
    share = {s: np.bincount(a.y[s], minlength=len(a.classes)) / len(a.y[s]) for s in a.y}
    assert np.abs(share["train"] - share["test"]).max() < 0.03


def test_scaler_is_fitted_on_train_only_and_drops_constant_columns():
    d = _load("digits")
    assert d.X["train"].shape[1] == d.scaler.keep.size < 64
    assert np.allclose(d.X["train"].mean(axis=0), 0, atol=1e-12)
    assert np.allclose(d.X["train"].std(axis=0), 1)
    assert not np.allclose(d.X["test"].mean(axis=0), 0, atol=1e-3)
    assert np.array_equal(d.scaler.transform(d.raw["test"]), d.X["test"])


def test_regression_targets_are_standardised_and_decoded_back():
    d = _load("diabetes")
    assert abs(d.y["train"].mean()) < 1e-12
    raw_y = d.y_original("test")
    assert raw_y.min() >= 25 and raw_y.max() <= 346  # diabetes progression scores


@pytest.mark.parametrize("task, m, model", [
    ("regression", 1, "linear"), ("regression", 3, "linear"), ("binary", 1, "logistic"),
    ("multiclass", 4, "softmax"), ("multilabel", 3, "multilabel")])
def test_synthetic_generators_are_seeded(task, m, model):
    cfg = cfgmod.SyntheticDatasetConfig(name="s", task=task, n=300, k=5, n_outputs=m, seed=3)
    a, b = data.load(cfg, model, 0), data.load(cfg, model, 0)
    assert a.digest == b.digest and a.X["train"].shape[1] == 5
    cfg.seed = 4
    assert data.load(cfg, model, 0).digest != a.digest
    if task == "multiclass":
        assert len(a.classes) == 4


def _file(tmp_path, frame: pd.DataFrame, kind: str = "csv") -> str:
    path = tmp_path / f"data.{kind}"
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_user_files_with_named_targets(tmp_path, kind):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((120, 3)), columns=["a", "b", "c"])
    frame["label"] = np.where(frame.a > 0, "yes", "no")
    frame["t1"], frame["t2"] = (frame.b > 0).astype(int), (frame.c > 0).astype(int)
    path = _file(tmp_path, frame, kind)
    d = data.load(cfgmod.FileDatasetConfig(name="mine", path=path, target=["label"],
                                           features=["a", "b", "c"]), "logistic", 0)
    assert d.task == "binary" and list(d.classes) == ["no", "yes"]
    assert d.feature_names == ["a", "b", "c"]
    ml = data.load(cfgmod.FileDatasetConfig(name="mine", path=path, target=["t1", "t2"],
                                            features=["a", "b", "c"]), "multilabel", 0)
    assert ml.task == "multilabel" and ml.y["train"].shape[1] == 2


@pytest.mark.parametrize("make, target, model, words", [
    (lambda f: f.assign(y=f.a * 1.5), ["y"], "logistic", ["'y'", "continuous", "logistic"]),
    (lambda f: f.assign(y=1), ["y"], "softmax", ["'y'", "one class"]),
    (lambda f: f.assign(y=np.arange(len(f)) % 3), ["y"], "logistic",
     ["'y'", "exactly 2 classes", "softmax"]),
    (lambda f: f.assign(y=1, b=np.where(f.a > 1, np.nan, f.b)), ["y"], "linear",
     ["'b'", "NaN"]),
    (lambda f: f.assign(y=f.a), ["nope"], "linear", ["'nope'", "columns"]),
    (lambda f: f.assign(y=f.a, s="x"), ["y"], "linear",
     ["'s'", "not numeric", "dataset.categorical=auto"]),
    # inf is named, never dropped as a constant column
    (lambda f: f.assign(y=f.a, b=np.where(f.a > 1, np.inf, f.b)), ["y"], "linear",
     ["'b'", "inf"]),
    (lambda f: f.assign(y=np.where(f.a > 1, -np.inf, f.a)), ["y"], "linear", ["'y'", "inf"]),
    (lambda f: f.assign(y=f.a, c=f.b), ["y"], "linear", ["'y'", "target and a feature"]),
    (lambda f: f.head(3).assign(y=f.a.head(3)), ["y"], "linear", ["3 rows", "too few"]),
])
def test_data_that_cannot_fit_gets_a_message_naming_the_column(tmp_path, make, target, model,
                                                                words):
    frame = pd.DataFrame(np.random.default_rng(1).standard_normal((60, 2)), columns=["a", "b"])
    path = _file(tmp_path, make(frame))
    features = ["b", "y"] if "target and a feature" in words else None
    with pytest.raises(data.DataError) as err:
        data.load(cfgmod.FileDatasetConfig(name="f", path=path, target=target,
                                           features=features), model, 0)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_a_label_constant_on_the_training_split_only_is_rejected_like_the_api_does(tmp_path):
    """The API's rule (validation.check_targets) on the split fit will get, before any run."""
    from pipeline import fit

    frame = pd.DataFrame(np.random.default_rng(2).standard_normal((100, 2)), columns=["a", "b"])
    frame["t1"] = (frame.a > 0).astype(int)
    frame["t2"] = 0
    frame.loc[np.argmax(frame.b.to_numpy()), "t2"] = 1  # one positive: it can't be in train
    cfg = cfgmod.FileDatasetConfig(name="f", path=_file(tmp_path, frame), target=["t1", "t2"])
    d = None
    for seed in range(20):  # a seed whose split leaves the one positive out of training
        try:
            d = data.load(cfg, "multilabel", seed)
        except data.DataError as err:
            assert "'t2'" in str(err) and "training split" in str(err) and "constant" in str(err)
            break
    else:
        pytest.fail("no seed put the single positive of t2 outside the training split")
    assert d is None or d.y["train"][:, 1].max() == 1
    with pytest.raises(ValueError, match="constant"):  # the API says the same of such a y
        fit(frame[["a", "b"]].to_numpy()[:50], np.column_stack([frame.t1[:50], np.zeros(50)]),
            model="multilabel")


def test_metrics_equal_scikit_learns():
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 2)
    pred = (p > 0.5).astype(int)
    got = metrics.binary(y, pred, np.column_stack([1 - p, p]))
    ref = {"accuracy": skm.accuracy_score(y, pred), "precision": skm.precision_score(y, pred),
           "recall": skm.recall_score(y, pred), "f1": skm.f1_score(y, pred),
           "log_loss": skm.log_loss(y, p), "roc_auc": skm.roc_auc_score(y, p)}
    assert got == pytest.approx(ref, rel=1e-12)
    y = rng.integers(0, 4, 300)
    P = rng.random((300, 4))
    P /= P.sum(axis=1, keepdims=True)
    got = metrics.multiclass(y, P.argmax(1), P)
    assert got == pytest.approx({"accuracy": skm.accuracy_score(y, P.argmax(1)),
                                 "macro_f1": skm.f1_score(y, P.argmax(1), average="macro"),
                                 "log_loss": skm.log_loss(y, P)}, rel=1e-12)
    Y, Q = rng.integers(0, 2, (300, 3)), rng.integers(0, 2, (300, 3))
    assert metrics.multilabel(Y, Q) == pytest.approx({
        "hamming_loss": skm.hamming_loss(Y, Q), "subset_accuracy": skm.accuracy_score(Y, Q),
        "micro_f1": skm.f1_score(Y, Q, average="micro"),
        "macro_f1": skm.f1_score(Y, Q, average="macro")}, rel=1e-12)
    T = rng.random((300, 2))
    R = T + 0.1 * rng.random((300, 2))
    assert metrics.regression(T, R) == pytest.approx({
        "mse": skm.mean_squared_error(T, R), "rmse": np.sqrt(skm.mean_squared_error(T, R)),
        "mae": skm.mean_absolute_error(T, R), "r2": skm.r2_score(T, R)}, rel=1e-12)
