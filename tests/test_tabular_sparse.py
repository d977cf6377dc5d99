"""A user file with a wide categorical column kept sparse through the app (issue 13 part 2).

``dataset.sparse=auto`` makes the encoded matrix CSR above ``tabular.SPARSE_ONEHOT_AT`` one-hot
columns: the same numbers as the dense layout (the scaler centres only numeric columns), the
same optimum, DVC stage files and test predictions as CSR parts, and a logged pyfunc that takes
the raw table and gathers weight rows instead of building the one-hot matrix.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipeline import config as cfgmod
from pipeline import csr_io, data, run, stage_files, tabular
from pipeline.config import Runtime
from tests.conftest import compose

SHOPS = 400  # more than SPARSE_ONEHOT_AT one-hot columns on the training split


def _frame(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A number, a 400-valued shop column (some shops only outside training), a colour."""
    rng = np.random.default_rng(seed)
    shop = rng.integers(0, SHOPS, n)
    f = pd.DataFrame({"a": rng.standard_normal(n), "shop": [f"s{i}" for i in shop],
                      "color": rng.choice(["red", "green", "blue"], n),
                      "b": rng.standard_normal(n)})
    z = f.a + rng.standard_normal(SHOPS)[shop] + 1.0 * (f.color == "red")
    f["y"] = (z + 0.3 * rng.standard_normal(n) > 0.3).astype(int)
    f.loc[[4, 8], "a"] = np.nan
    f.loc[[6], "color"] = None
    return f


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("wide") / "shops.csv"
    _frame().to_csv(path, index=False)
    return str(path)


def _load(path: str, sparse, **kw) -> data.Dataset:
    kw = {"categorical": "auto", "missing": "mean", "sparse": sparse, **kw}
    return data.load(cfgmod.FileDatasetConfig(name="f", path=path, target=["y"], **kw),
                     "logistic", 0)


def test_auto_keeps_a_wide_block_sparse_with_the_dense_layouts_numbers(csv):
    d, dense = _load(csv, "auto"), _load(csv, False)
    assert d.prep is not None and d.prep.sparse and dense.prep is not None
    assert not dense.prep.sparse and d.prep.names == dense.prep.names
    assert d.prep.onehot.sum() > tabular.SPARSE_ONEHOT_AT
    np.testing.assert_array_equal(d.scaler.keep, dense.scaler.keep)
    np.testing.assert_array_equal(d.scaler.mean, dense.scaler.mean)
    np.testing.assert_allclose(d.scaler.scale, dense.scaler.scale, rtol=1e-14)
    for split in ("train", "val", "test"):
        assert sp.issparse(d.raw[split]) and sp.issparse(d.X[split])
        np.testing.assert_array_equal(d.raw[split].toarray(), dense.raw[split])
        np.testing.assert_allclose(d.X[split].toarray(), dense.X[split], rtol=1e-14,
                                   atol=1e-15)
        # one-hot columns are still stored sparse: about one non-zero a categorical column
        n_num = len(d.prep.numeric)
        hot = d.X[split][:, n_num:]
        assert hot.nnz <= 2 * hot.shape[0] < hot.shape[0] * hot.shape[1] / 100
    assert d.facts == dense.facts and d.digest == dense.digest
    import pipeline

    fits = [pipeline.fit(x.X["train"], x.y["train"], model="logistic", reg="l2", lam=1e-2,
                         tol=1e-10) for x in (d, dense)]
    assert fits[0].objective == pytest.approx(fits[1].objective, rel=1e-12)
    np.testing.assert_allclose(fits[0].W, fits[1].W, rtol=1e-6, atol=1e-8)


def test_a_narrow_block_stays_dense_under_auto_and_sparse_true_forces_csr(tmp_path):
    f = _frame(n=300)
    f["shop"] = f.shop.str[:2]  # s0..s9: ten categories
    path = tmp_path / "narrow.csv"
    f.to_csv(path, index=False)
    assert not _load(str(path), "auto").prep.sparse
    forced = _load(str(path), True)
    assert forced.prep.sparse and sp.issparse(forced.X["train"])


def test_the_dense_cap_names_the_sparse_fix_and_a_bad_value_is_a_config_error(csv):
    with pytest.raises(data.DataError, match="more than dataset.max_onehot=100 .*"
                                             "dataset.sparse=true"):
        _load(csv, False, max_onehot=100)
    assert _load(csv, "auto", max_onehot=100).prep.sparse  # the cap bounds dense blocks only
    with pytest.raises(cfgmod.ConfigError, match="dataset.sparse='maybe' is not allowed"):
        compose(["dataset=file", "dataset.path=x.csv", "dataset.target=[y]",
                 "dataset.sparse=maybe"])


def test_prepared_stage_files_keep_csr_parts_and_read_back(csv, tmp_path):
    d = _load(csv, "auto")
    out = tmp_path / "prepared"
    stage_files.save_prepared(d, out)
    names = {p.name for p in out.glob("X_train*")}
    assert names == {f"X_train.{p}.npy" for p in csr_io.PARTS}  # no dense X written
    back = stage_files.load_prepared(out)
    assert back.prep is not None and back.prep.sparse
    for split in ("train", "val", "test"):
        assert sp.issparse(back.X[split])
        assert (back.X[split] != d.X[split]).nnz == 0
        assert (back.raw[split] != d.raw[split]).nnz == 0


def test_a_sparse_run_logs_a_pyfunc_that_gathers_what_the_pipeline_predicted(csv, store,
                                                                           tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    import pipeline

    config = compose(["dataset=file", f"dataset.path={csv}", "dataset.target=[y]",
                      "dataset.categorical=auto", "dataset.missing=mean", "model=logistic",
                      "reg=l2", f"tracking.uri={store}", "tracking.progress=false",
                      "tracking.log_plots=false"])
    res = run.run(config, Runtime(output_dir=str(tmp_path / "out")), quiet=True)
    assert sp.issparse(res.data.X["test"])
    client = MlflowClient(store)
    r = client.get_run(res.run_id)
    assert r.info.status == "FINISHED" and r.data.params["dataset.sparse"] == "auto"
    pred = client.download_artifacts(res.run_id, "test_predictions.npz", str(tmp_path))
    with np.load(pred, allow_pickle=False) as npz:
        want = npz["y_pred"]
        X_raw = csr_io.joined(dict(npz), "X_raw")
    assert (X_raw != res.data.raw["test"]).nnz == 0
    (ds,) = r.inputs.dataset_inputs  # one column per raw column in the schema, not 400+
    columns = json.loads(json.loads(ds.dataset.schema)["mlflow_tensorspec"]["features"])
    assert [c["name"] for c in columns] == ["a", "b", "shop", "color"]
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"runs:/{res.run_id}/model")
    table = res.data.tables["test"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen shops: counted in a warning
        got = np.asarray(model.predict(table))
        P = model.predict(table, params={"predict_proba": True}).to_numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(P, pipeline.predict_proba(res.fit, res.data.X["test"]),
                               rtol=1e-9, atol=1e-12)
