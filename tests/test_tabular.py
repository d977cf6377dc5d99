"""User files with categorical columns and missing values (``dataset=file``, issue 13 part 2).

Categories and fill values come from the training split only; an unseen category is all zeros
and counted; missing values are an error by default, naming columns and counts; the logged
pyfunc takes the raw table and predicts what the pipeline predicted. Small data, two CLI calls.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from pipeline import config as cfgmod
from pipeline import data, run, tabular
from pipeline.config import Runtime
from tests.conftest import cli_env, compose, runs_of


def _frame(n: int = 240, seed: int = 0, holes: bool = True) -> pd.DataFrame:
    """Numbers, a text column, a rare-valued text column, an int code; y depends on color."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({"a": rng.standard_normal(n),
                      "color": rng.choice(["red", "green", "blue"], n),
                      "shop": [f"s{i}" for i in rng.integers(0, 60, n)],  # some only in val/test
                      "code": rng.choice([10, 20, 30], n),
                      "b": rng.standard_normal(n)})
    z = f.a + 2.0 * (f.color == "red") - 1.0 * (f.code == 30) + 0.3 * rng.standard_normal(n)
    f["y"] = (z > 0.5).astype(int)
    if holes:
        f.loc[[3, 7, 11, 50], "a"] = np.nan
        f.loc[[5, 9], "color"] = None
    return f


def _csv(tmp_path, frame: pd.DataFrame, name: str = "shop.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _load(path: str, model: str = "logistic", seed: int = 0, **kw) -> data.Dataset:
    kw = {"categorical": "auto", "missing": "mean", **kw}
    return data.load(cfgmod.FileDatasetConfig(name="f", path=path, target=["y"], **kw), model,
                     seed)


def test_categories_are_learnt_on_the_training_split_and_unseen_ones_counted(tmp_path):
    d = _load(_csv(tmp_path, _frame()))
    p = d.prep
    assert p is not None and p.categorical == ["color", "shop"]
    train, test = d.tables["train"], d.tables["test"]
    for col, cats in zip(p.categorical, p.categories, strict=True):
        assert list(cats) == sorted(set(train[col].dropna().astype(str)))
    assert d.feature_names[:3] == ["a", "code", "b"]
    assert d.feature_names[3:6] == ["color=blue", "color=green", "color=red"]
    new_shops = ~test.shop.isin(set(train.shop))
    assert new_shops.sum() > 0  # the seed gives shops seen only outside training
    assert d.facts["data/test_unseen_categories"] == new_shops.sum()
    new_val = (~d.tables["val"].shop.isin(set(train.shop))).sum()
    assert d.facts["data/unseen_categories"] == new_shops.sum() + new_val
    # an unseen shop is a row of zeros in the shop block; every other row has exactly one 1
    hot = [j for j, n in enumerate(d.feature_names) if n.startswith("shop=")]
    block = d.raw["test"][:, hot]
    assert set(np.unique(block)) == {0.0, 1.0}
    np.testing.assert_array_equal(block.sum(axis=1), (~new_shops).astype(float))
    # one-hot columns stay 0/1 (mean 0, scale 1); numeric columns standardised on train
    kept = d.scaler.keep
    onehot = p.onehot[kept]
    assert np.all(d.scaler.mean[onehot] == 0) and np.all(d.scaler.scale[onehot] == 1)
    assert np.allclose(d.X["train"][:, ~onehot].mean(axis=0), 0, atol=1e-12)
    assert set(np.unique(d.X["train"][:, onehot])) == {0.0, 1.0}


def test_tabular_unseen_category_maps_to_zeros_and_is_counted():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]})
    prep = tabular.fit(train, ["c"], "error", 10, ValueError)
    enc = prep.transform(pd.DataFrame({"x": [0.0, 1.0], "c": ["b", "zzz"]}))
    np.testing.assert_array_equal(enc.X, [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert enc.unseen == {"c": 1} and enc.filled == 0
    again = tabular.Tabular.from_arrays(prep.arrays())  # what the npz keeps, read back
    assert again.names == prep.names == ["x", "c=a", "c=b"]
    np.testing.assert_array_equal(again.transform(pd.DataFrame({"x": [0.0], "c": ["q"]})).X,
                                  [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="max_onehot=1"):
        tabular.fit(train, ["c"], "error", 1, ValueError)


def test_auto_detects_text_and_category_columns_and_a_list_names_them(tmp_path):
    f = _frame(holes=False)
    pq = tmp_path / "shop.parquet"
    f.assign(color=f.color.astype("category"), flag=f.b > 0).to_parquet(pq)
    d = _load(str(pq), missing="error")
    assert d.prep is not None and d.prep.categorical == ["color", "shop"]  # not bool, not int
    assert "flag" in d.prep.numeric
    named = _load(_csv(tmp_path, f), categorical=["code", "color", "shop"], missing="error")
    assert named.prep is not None and named.prep.categorical == ["color", "shop", "code"]
    assert {"code=10", "code=20", "code=30"} <= set(named.feature_names)
    with pytest.raises(data.DataError, match="'color' is not numeric.*dataset.categorical=auto"):
        _load(_csv(tmp_path, f), categorical=None, missing="error")
    with pytest.raises(data.DataError, match="'nope' \\(dataset.categorical\\) is not in"):
        _load(_csv(tmp_path, f), categorical=["nope"])


def test_missing_values_are_an_error_by_default_naming_columns_and_counts(tmp_path):
    with pytest.raises(data.DataError) as err:
        _load(_csv(tmp_path, _frame()), missing="error")
    msg = str(err.value)
    assert "'a' (4 of 240 rows)" in msg and "'color' (2 of 240 rows)" in msg
    assert "dataset.missing=mean" in msg


@pytest.mark.parametrize("missing", ["mean", "median", "most_frequent"])
def test_each_fill_strategy_uses_training_split_statistics(tmp_path, missing):
    f = _frame()
    f.loc[[13, 17], "code"] = np.nan
    d = _load(_csv(tmp_path, f), missing=missing)
    p, train = d.prep, d.tables["train"]
    assert p is not None
    a = train.a.dropna()
    want = {"mean": a.mean(), "median": a.median(),
            "most_frequent": a.value_counts().sort_index(kind="stable").idxmax()}[missing]
    assert p.num_fill[p.numeric.index("a")] == pytest.approx(want, rel=1e-12)
    if missing != "most_frequent":  # the training split's statistic, not the whole file's
        assert want != pytest.approx(getattr(f.a, missing)(), rel=1e-6)
    counts = train.color.value_counts()
    assert p.cat_fill[p.categorical.index("color")] == min(counts.index[counts == counts.max()])
    for split in ("train", "val", "test"):  # every hole filled with the training value
        rows = d.tables[split].a.isna().to_numpy()
        np.testing.assert_array_equal(d.raw[split][rows, 0], p.num_fill[0])
    assert d.facts["data/filled_values"] == 4 + 2 + 2


def test_prepared_files_round_trip_without_pickle(tmp_path):
    """What the DVC prepare stage would keep (``.npy`` and JSON) gives the same encoding."""
    import dataclasses
    import json

    d = _load(_csv(tmp_path, _frame()))
    arrays, extra = tabular.prepared_files(d)
    for key, a in arrays.items():
        np.save(tmp_path / f"{key}.npy", a, allow_pickle=False)
    text = json.dumps(extra, sort_keys=True, allow_nan=False)
    back = {k: np.load(tmp_path / f"{k}.npy", allow_pickle=False) for k in arrays}
    bare = dataclasses.replace(d, prep=None, tables={}, facts={})
    got = tabular.restore_prepared(bare, back, json.loads(text))
    assert got.prep is not None and d.prep is not None and got.prep.names == d.prep.names
    np.testing.assert_array_equal(got.prep.transform(d.tables["test"]).X, d.raw["test"])
    assert got.facts == d.facts
    pd.testing.assert_frame_equal(got.input_example(), d.input_example())
    assert tabular.restore_prepared(bare, {}, {}) is bare


@pytest.mark.parametrize("override, words", [
    ("dataset.missing=zero", ["dataset.missing='zero'", "error, mean, median, most_frequent"]),
    ("dataset.max_onehot=0", ["dataset.max_onehot=0", ">= 1"]),
    ("dataset.categorical={a:1}", ["dataset.categorical=", "auto, none, or a list"]),
])
def test_bad_file_options_are_config_errors(override, words):
    with pytest.raises(cfgmod.ConfigError) as err:
        compose(["dataset=file", "dataset.path=x.csv", "dataset.target=[y]", override])
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_the_logged_pyfunc_takes_the_raw_table_and_predicts_what_the_run_did(store, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    import pipeline

    path = _csv(tmp_path, _frame())
    config = compose(["dataset=file", f"dataset.path={path}", "dataset.target=[y]",
                      "dataset.categorical=auto", "dataset.missing=mean", "model=logistic",
                      f"tracking.uri={store}", "tracking.progress=false",
                      "tracking.log_plots=false"])
    res = run.run(config, Runtime(output_dir=str(tmp_path / "out")), quiet=True)
    client = MlflowClient(store)
    metrics = client.get_run(res.run_id).data.metrics
    assert metrics["data/test_unseen_categories"] == res.data.facts[
        "data/test_unseen_categories"] > 0
    pred = client.download_artifacts(res.run_id, "test_predictions.npz", str(tmp_path))
    with np.load(pred, allow_pickle=False) as npz:
        want = npz["y_pred"]
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"runs:/{res.run_id}/model")
    table = res.data.tables["test"]
    assert not pd.api.types.is_numeric_dtype(table.color)  # the raw table, text and all
    with pytest.warns(UserWarning, match="not seen in training, encoded as all zeros: 'shop'"):
        got = np.asarray(model.predict(table))
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P = model.predict(table, params={"predict_proba": True}).to_numpy()
    np.testing.assert_allclose(P, pipeline.predict_proba(res.fit, res.data.X["test"]),
                               rtol=1e-9, atol=1e-12)
    # a hole and a colour never seen: filled with the training value / all zeros
    row = table.iloc[[0]].copy()
    row.loc[:, "a"], row.loc[:, "color"] = np.nan, "violet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_new = model.predict(row, params={"predict_proba": True}).to_numpy()
    assert res.data.prep is not None
    enc = res.data.prep.transform(row).X
    np.testing.assert_allclose(p_new, pipeline.predict_proba(res.fit, res.data.scaler.transform(
        enc)), rtol=1e-9)


NO_SKLEARN = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numba", "pipeline", "kernels", "sklearn"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import mlflow, numpy as np, pandas as pd, warnings
warnings.simplefilter("ignore")
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(f"runs:/{sys.argv[2]}/model")
table = pd.read_csv(sys.argv[3]).drop(columns=["y"])
print("PYFUNC-OK", len(np.asarray(model.predict(table))))
"""


def test_cli_run_with_categories_and_holes_and_a_clean_error(cli, store, tmp_path):
    path = _csv(tmp_path, _frame(n=120))
    args = ["dataset=file", f"dataset.path={path}", "dataset.target=[y]",
            "dataset.categorical=auto", f"tracking.uri={store}", "tracking.log_plots=false"]
    bad = cli(*args)  # dataset.missing=error by default
    assert bad.returncode == 2, bad.stderr[-2000:]
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: missing values"), bad.stderr
    assert "'a' (4 of 120 rows)" in lines[0] and "Traceback" not in bad.stderr
    assert runs_of(store) == []
    ok = cli(*args, "dataset.missing=mean")
    assert ok.returncode == 0, ok.stderr[-3000:]
    (r,) = runs_of(store)
    assert r.info.status == "FINISHED" and r.data.params["dataset.missing"] == "mean"
    assert r.data.metrics["data/onehot_columns"] > 3
    check = subprocess.run([sys.executable, "-c", NO_SKLEARN, store, r.info.run_id, path],
                           capture_output=True, text=True, env=cli_env(), cwd=tmp_path)
    assert "PYFUNC-OK 120" in check.stdout, check.stderr[-3000:]
