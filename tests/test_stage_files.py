"""The DVC stages' prepared folder keeps everything a fit and its model need: a file's
categories and fill values (so the model trained from ``data/prepared`` takes the raw table)
and its row weights; a folder without them holds exactly the files it held before."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import config as cfgmod
from pipeline import data
from pipeline.stage_files import load_prepared, save_prepared


def _table(tmp_path, weights: bool):
    rng = np.random.default_rng(0)
    n = 200
    f = pd.DataFrame({"a": rng.standard_normal(n), "color": rng.choice(["red", "blue"], n),
                      "b": rng.standard_normal(n)})
    f["y"] = ((f.a + (f.color == "red")) > 0.5).astype(int)
    f.loc[[3, 9], "a"] = np.nan
    if weights:
        f["w"] = rng.uniform(0.5, 2.0, n)
    path = tmp_path / "t.csv"
    f.to_csv(path, index=False)
    extra = {"weight_column": "w"} if weights else {}
    d = cfgmod.FileDatasetConfig(name="t", path=str(path), target=["y"], categorical="auto",
                                 missing="mean", **extra)
    return data.load(d, "logistic", 0)


def test_prepared_folder_round_trips_the_encoding_and_the_weights(tmp_path):
    ds = _table(tmp_path, weights=True)
    save_prepared(ds, tmp_path / "prepared")
    back = load_prepared(tmp_path / "prepared")
    assert back.prep is not None and back.facts == ds.facts
    assert back.feature_names == ds.feature_names
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(back.X[split], ds.X[split])
        np.testing.assert_array_equal(back.weights[split], ds.weights[split])
    raw = ds.tables["test"]  # the raw rows (text and holes): encoded again to the same X
    np.testing.assert_array_equal(back.prep.transform(raw).X, ds.prep.transform(raw).X)
    head = back.tables["test"]  # the logged model's input example, read back from JSON
    np.testing.assert_array_equal(back.prep.transform(head).X,
                                  ds.prep.transform(raw.head(len(head))).X)


def test_a_numeric_dataset_writes_no_extra_files(tmp_path):
    d = cfgmod.SyntheticDatasetConfig(name="s", task="binary", n=120, k=3)
    ds = data.load(d, "logistic", 0)
    save_prepared(ds, tmp_path / "p")
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert not [n for n in names if n.startswith(("prep_", "w_")) or n == "tabular.json"]
    assert load_prepared(tmp_path / "p").weights is None
