"""The app's ``dataset.streaming``: a file read chunk by chunk (``pipeline.data_streamed``).

A streamed run fits the same scaled training rows as an in-memory fit of those rows: with
the chunking of the streamed source (``ArrayObjective(..., chunk_rows=...)``) to the bit, and
its metrics are those of the in-memory predictions; the DVC stages write the splits as
``.npy`` shards and train from them to the same bits. Options a streamed run cannot honour
are config errors naming the field.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import config as cfgmod
from pipeline import data as datamod
from pipeline import data_streamed, metrics, run
from tests.conftest import compose

N, K, CHUNK = 1500, 4, 300


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, K)) * [1.0, 5.0, 0.2, 1.0] + [0.0, 3.0, -1.0, 0.5]
    y = (X @ [1.0, -0.3, 2.0, 0.5] + rng.standard_normal(N) > 0.2).astype(int)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(K)])
    frame["label"] = np.where(y == 1, "yes", "no")  # text labels: classes by name
    return frame


@pytest.fixture(scope="module")
def parquet(tmp_path_factory):
    path = tmp_path_factory.mktemp("streamed") / "d.parquet"
    _frame().to_parquet(path, row_group_size=250)  # row groups that chunks straddle
    return path


def _overrides(path, *more):
    return ["dataset=file", f"dataset.path={path}", "dataset.target=[label]",
            "dataset.streaming=true", f"dataset.chunk_rows={CHUNK}", "model=logistic",
            "reg=l2", "reg.lam=0.01", "solver=lbfgs", "solver.tol=1e-9", *more]


def test_the_split_rule_depends_on_row_and_seed_only():
    whole = data_streamed.split_codes(0, 10_000, 3, 0.2, 0.1)
    parts = np.concatenate([data_streamed.split_codes(lo, min(lo + 777, 10_000), 3, 0.2, 0.1)
                            for lo in range(0, 10_000, 777)])
    np.testing.assert_array_equal(whole, parts)
    share = np.bincount(whole, minlength=3) / whole.size
    np.testing.assert_allclose(share, [0.7, 0.2, 0.1], atol=0.02)
    assert (data_streamed.split_codes(0, 10_000, 4, 0.2, 0.1) != whole).mean() > 0.3


def test_streamed_run_fits_and_scores_the_in_memory_rows_to_the_bit(store, tmp_path, parquet):
    from mlflow.tracking import MlflowClient

    from pipeline import predict, predict_proba
    from pipeline.api import _solve
    from pipeline.objectives import ArrayObjective
    from pipeline.solvers import check_solver_options

    config = compose([*_overrides(parquet), f"tracking.uri={store}", "tracking.progress=false"])
    res = run.run(config, cfgmod.Runtime(output_dir=str(tmp_path / "out")), quiet=True)
    data = res.data
    assert data_streamed.is_streamed(data) and data.raw == {}
    # the same rows in memory: the rule's splits, the streamed scaler (exact statistics)
    frame = pd.read_parquet(parquet)
    X = frame[[f"f{j}" for j in range(K)]].to_numpy()
    code = data_streamed.split_codes(0, N, config.seed, 0.2, 0.2)
    tr = code == 0
    mean, std = X[tr].mean(axis=0), X[tr].std(axis=0)
    np.testing.assert_allclose(data.scaler.mean, mean, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(data.scaler.scale, std, rtol=1e-13)
    labels = np.unique(frame.label)
    y = np.searchsorted(labels, frame.label.to_numpy())
    assert list(data.classes) == list(labels)
    Xs = {s: data.scaler.transform(X[code == c]) for s, c in data_streamed.CODES.items()}
    for s, c in data_streamed.CODES.items():
        np.testing.assert_array_equal(data.y[s], y[code == c])
        np.testing.assert_array_equal(data.X[s].take(np.arange(len(data.y[s])))[0], Xs[s])
    # chunking of the streamed source: ArrayObjective's bits
    obj = ArrayObjective("logistic", Xs["train"], y[tr].astype(float).reshape(-1, 1), 2,
                         chunk_rows=CHUNK)
    ref = _solve(obj, None, None, 0, "l2", 0.01, 0.5, "lbfgs", 1e-9, 1000, config.seed, "cpu",
                 None, check_solver_options("lbfgs", cfgmod.solver_options(config.solver)))
    np.testing.assert_array_equal(res.fit.W, ref.W)
    np.testing.assert_array_equal(res.fit.b, ref.b)
    # the in-memory scaler (numpy's two-pass std) moves the optimum by rounding only
    import pipeline

    mem = pipeline.fit((X[tr] - mean) / std, y[tr], model="logistic", reg="l2", lam=0.01,
                       solver="lbfgs", tol=1e-9)
    np.testing.assert_allclose(res.fit.W, mem.W, rtol=1e-6, atol=1e-8)
    # every split's metrics: those of the in-memory predictions of the same rows
    logged = MlflowClient(store).get_run(res.run_id).data
    for s, c in data_streamed.CODES.items():
        want = metrics.score("binary", y[code == c], predict(res.fit, Xs[s]),
                             predict_proba(res.fit, Xs[s]))
        for name, value in metrics.grouped(s, want).items():
            assert logged.metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    p = logged.params
    assert (p["data.streamed"], p["data.source_kind"], p["data.chunk_rows"]) == \
        ("true", "parquet", str(CHUNK))
    assert p["data.n_chunks"] == str(-(-int(tr.sum()) // CHUNK))
    assert "step/val_accuracy" not in logged.metrics  # a pass over the file per step: not kept
    # the logged model takes the file's raw rows and predicts what the run predicted
    import mlflow

    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"runs:/{res.run_id}/model")
    got = np.asarray(model.predict(frame[code == 2].drop(columns="label")))
    np.testing.assert_array_equal(got, datamod.decode_targets(data, res.predictions["pred"]))
    # the training input's digest is an in-memory run's of the same rows
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(X[tr]).tobytes())
    h.update(np.ascontiguousarray(y[tr]).tobytes())
    assert data.train_digest == h.hexdigest()[:16]


def test_a_weight_column_streams_to_the_weighted_in_memory_bits(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline import predict, predict_proba
    from pipeline.api import _solve
    from pipeline.objectives import ArrayObjective
    from pipeline.solvers import check_solver_options

    frame = _frame(2)
    rng = np.random.default_rng(3)
    frame["w"] = rng.uniform(0.2, 3.0, N) * (rng.uniform(size=N) > 0.1)  # some rows weigh 0
    frame.to_parquet(tmp_path / "w.parquet", row_group_size=250)
    config = compose([*_overrides(tmp_path / "w.parquet", "dataset.weight_column=w"),
                      f"tracking.uri={store}", "tracking.progress=false",
                      "tracking.log_model=false", "tracking.log_plots=false"])
    res = run.run(config, cfgmod.Runtime(output_dir=str(tmp_path / "out")), quiet=True)
    X = frame[[f"f{j}" for j in range(K)]].to_numpy()  # w is no feature
    assert res.data.X["train"].n_features == K
    code = data_streamed.split_codes(0, N, config.seed, 0.2, 0.2)
    y = np.searchsorted(np.unique(frame.label), frame.label.to_numpy())
    w = frame.w.to_numpy()
    Xs = {s: res.data.scaler.transform(X[code == c]) for s, c in data_streamed.CODES.items()}
    tr = code == 0
    np.testing.assert_array_equal(res.data.weights["train"], w[tr])
    obj = ArrayObjective("logistic", Xs["train"], y[tr].astype(float).reshape(-1, 1), 2,
                         sample_weight=w[tr], chunk_rows=CHUNK)
    ref = _solve(obj, None, None, 0, "l2", 0.01, 0.5, "lbfgs", 1e-9, 1000, config.seed, "cpu",
                 None, check_solver_options("lbfgs", cfgmod.solver_options(config.solver)))
    np.testing.assert_array_equal(res.fit.W, ref.W)
    np.testing.assert_array_equal(res.fit.b, ref.b)
    logged = MlflowClient(store).get_run(res.run_id).data
    assert logged.params["data.weighted"] == "true"
    for s, c in data_streamed.CODES.items():
        want = metrics.score("binary", y[code == c], predict(res.fit, Xs[s]),
                             predict_proba(res.fit, Xs[s]), w[code == c])
        for name, value in metrics.grouped(s, want).items():
            assert logged.metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    # DVC: prepare keeps the weights next to the shards; train fits them to the same bits
    from pipeline.stage_files import load_prepared, save_prepared
    from pipeline.streamed_fit import fit_source

    save_prepared(res.data, tmp_path / "prepared")
    back = load_prepared(tmp_path / "prepared")
    np.testing.assert_array_equal(back.weights["val"], w[code == 1])
    again = fit_source(back.X["train"], None, sample_weight=back.weights["train"],
                       model="logistic", reg="l2", lam=0.01, solver="lbfgs", tol=1e-9,
                       seed=config.seed, **cfgmod.solver_options(config.solver))
    np.testing.assert_array_equal(again.W, res.fit.W)


def test_balanced_class_weights_stream_to_the_in_memory_bits(parquet):
    from pipeline.api import _solve
    from pipeline.objectives import ArrayObjective
    from pipeline.solvers import check_solver_options
    from pipeline.streamed_fit import fit_source
    from pipeline.weights import row_weights

    config = compose(_overrides(parquet, "model.class_weight=balanced"))
    data = datamod.load(config.dataset, "logistic", 0, config.model.class_weight)
    opts = cfgmod.solver_options(config.solver)
    got = fit_source(data.X["train"], None, class_weight="balanced", model="logistic",
                     reg="l2", lam=0.01, solver="lbfgs", tol=1e-9, **opts)
    T = data.y["train"].astype(float).reshape(-1, 1)
    s = row_weights("logistic", None, "balanced", T, np.array([0, 1]))
    assert s is not None and len(np.unique(s)) == 2
    Xs = data.X["train"].take(np.arange(len(T)))[0]
    obj = ArrayObjective("logistic", Xs, T, 2, sample_weight=s, chunk_rows=CHUNK)
    ref = _solve(obj, None, None, 0, "l2", 0.01, 0.5, "lbfgs", 1e-9, 1000, 0, "cpu", None,
                 check_solver_options("lbfgs", opts))
    np.testing.assert_array_equal(got.W, ref.W)


def test_a_npy_file_and_its_targets_stream_for_regression(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((800, 3))
    y = X @ [1.0, 2.0, -1.0] + 5.0 + 0.1 * rng.standard_normal(800)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    config = compose(["dataset=file", f"dataset.path={tmp_path / 'X.npy'}",
                      f"dataset.target_path={tmp_path / 'y.npy'}", "dataset.streaming=auto",
                      "dataset.chunk_rows=128", "model=linear", "reg=none",
                      "solver=closed_form"])  # auto: a .npy X always streams
    data = datamod.load(config.dataset, "linear", 0)
    code = data_streamed.split_codes(0, 800, 0, 0.2, 0.2)
    np.testing.assert_allclose(data.y_original("test"), y[code == 2], rtol=1e-13)
    import pipeline

    res = pipeline.fit(data.X["train"], None, model="linear", solver="closed_form")
    np.testing.assert_allclose(data.scaler.y_scale * res.W[:, 0] / data.scaler.scale,
                               [1.0, 2.0, -1.0], atol=0.02)


def test_auto_streams_above_the_size_the_config_names(parquet):
    small = compose(_overrides(parquet, "dataset.streaming=auto", "dataset.stream_above_mb=100"))
    assert not data_streamed.is_streamed(datamod.load(small.dataset, "logistic", 0))
    big = compose(_overrides(parquet, "dataset.streaming=auto", "dataset.stream_above_mb=0"))
    assert data_streamed.is_streamed(datamod.load(big.dataset, "logistic", 0))


@pytest.mark.parametrize("extra, words", [
    (["dataset.categorical=auto"], ["dataset.categorical", "dataset.streaming=false"]),
    (["dataset.missing=mean"], ["dataset.missing=mean"]),
    (["dataset.path=X.npy", "dataset.target_path=y.npy", "dataset.weight_column=w"],
     ["dataset.weight_column", "Parquet"]),
    (["search=cv"], ["search=cv", "search=none"]),
    (["solver=sgd"], ["solver=sgd", "solver=auto"]),
    (["dataset.streaming=maybe"], ["dataset.streaming='maybe'", "auto"]),
    (["dataset.chunk_rows=0"], ["dataset.chunk_rows=0", ">= 1"]),
    (["dataset.path=x.csv"], ["CSV", "Parquet"]),
    (["dataset.path=X.npy"], ["dataset.target_path"]),
    (["dataset.streaming=false", "dataset.target_path=y.npy"], ["dataset.target_path"]),
])
def test_what_streaming_cannot_honour_is_a_config_error(parquet, extra, words):
    with pytest.raises(cfgmod.ConfigError) as err:
        compose(_overrides(parquet, *extra))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_nan_in_a_streamed_file_names_its_column(tmp_path):
    frame = _frame()
    frame.loc[[7, 900], "f2"] = np.nan
    frame.to_parquet(tmp_path / "bad.parquet", row_group_size=250)
    config = compose(_overrides(tmp_path / "bad.parquet"))
    with pytest.raises(datamod.DataError, match=r"column 'f2' .* NaN \(rows \[7\]"):
        datamod.load(config.dataset, "logistic", 0)


def test_dvc_stages_write_shards_and_train_to_the_app_bits(store, tmp_path, parquet,
                                                         monkeypatch):
    from pipeline import stages
    from pipeline.compose import compose as compose_params
    from pipeline.stage_files import load_model

    conf = stages.Path(__file__).resolve().parents[1] / "conf"
    over = [*_overrides(parquet), f"tracking.uri={store}", "tracking.progress=false",
            "tracking.log_model=false", "tracking.log_plots=false"]
    (tmp_path / "params.yaml").write_text(compose_params(over, conf))
    monkeypatch.chdir(tmp_path)
    stages.prepare(tmp_path / "params.yaml")
    prepared = tmp_path / "data" / "prepared"
    assert not list(prepared.glob("X_*.npy")) and not list(prepared.glob("raw_*"))
    shards = sorted((prepared / "X_train").glob("*.npy"))
    assert len(shards) > 1 and all(np.load(p).shape[0] == CHUNK for p in shards[:-1])
    stages.train(tmp_path / "params.yaml")
    stages.evaluate(tmp_path / "params.yaml")
    app = run.run(compose(over), cfgmod.Runtime(output_dir=str(tmp_path / "app")), quiet=True)
    fitted = load_model(tmp_path / "models")
    np.testing.assert_array_equal(fitted.W, app.fit.W)
    got = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    assert got["test"]["accuracy"] == app.metrics["test/accuracy"]
    assert got["val"]["log_loss"] == app.metrics["val/log_loss"]
