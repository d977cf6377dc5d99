"""The MLflow pyfunc model, logged as code ("models from code"): numpy-only prediction.

MLflow copies THIS FILE next to the logged model and executes it on
``mlflow.pyfunc.load_model``; the pipeline never imports it. It must therefore stay
self-contained: numpy, pandas and mlflow only, no numba, no ``pipeline`` import, no pickle.
The weights, the scaler and the class labels come from the ``model_npz`` artifact (written by
``tracking.save_model_npz``). Predict repeats the pipeline's own steps: select and standardise
the raw feature columns, ``Z = X W + b``, then the task's decision rule, and returns targets in
the source's units/labels. A user file with categorical columns or ``dataset.missing`` adds
the ``prep_*`` arrays (``pipeline.tabular``): the model then takes the raw table (text,
categories, missing values) and encodes it as the pipeline did; an unseen category is all
zeros, and a ``UserWarning`` counts such rows per column.

``params={"predict_proba": true}`` (the signature's params schema, default false) returns the
class probabilities instead: an (n, m) table with one column per class, named by the labels
``predict`` returns (per label for multilabel), computed as ``pipeline.predict_proba`` does
(sigmoid for logistic, softmax, normalised one-vs-rest sigmoids, a sigmoid per label). Why a
param rather than a second model: one served endpoint answers both, and MLflow checks the
param's type against the schema before ``predict`` runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _logits(p: dict[str, np.ndarray], X_raw) -> np.ndarray:
    if isinstance(X_raw, Codes):
        return X_raw.logits(p)
    X = (np.asarray(X_raw, dtype=np.float64)[:, p["keep"]] - p["mean"]) / p["scale"]
    return X @ p["W"] + p["b"]


class Codes:
    """A raw table as a sparse-layout model takes it: the filled numeric block (n, n_num) and
    per categorical column the index of each row's category in its one-hot block (-1: none).

    Why not the one-hot matrix: a wide block (``dataset.sparse``) would be n x (thousands of
    columns) dense; its logits need one weight row per category instead, gathered here.
    """

    def __init__(self, numeric: np.ndarray, codes: list[np.ndarray], offsets: np.ndarray):
        self.numeric, self.codes, self.offsets = numeric, codes, offsets

    def logits(self, p: dict[str, np.ndarray]) -> np.ndarray:
        """``((x - mean) / scale) W + b`` summed as numeric block @ W + gathered weight rows."""
        W = p["W"].reshape(len(p["keep"]), -1)
        n_enc = self.numeric.shape[1] + int(self.offsets[-1])
        Wx = np.zeros((n_enc, W.shape[1]))
        Wx[p["keep"]] = W / p["scale"][:, None]
        Z = self.numeric @ Wx[:self.numeric.shape[1]] + (p["b"] - (p["mean"] / p["scale"]) @ W)
        for j, code in enumerate(self.codes):
            seen = code >= 0
            rows = self.numeric.shape[1] + int(self.offsets[j]) + code[seen]
            Z[seen] += Wx[rows]
        return Z


def predict_arrays(p: dict[str, np.ndarray], X_raw: np.ndarray | Codes):
    """Predictions for raw features ``X_raw`` (n, n_features_in) given the npz arrays ``p``."""
    Z = _logits(p, X_raw)
    task = str(p["task"])
    if task == "regression":
        Y = Z * p["y_scale"] + p["y_mean"]
        return Y[:, 0] if Y.shape[1] == 1 else Y
    if task == "multilabel":
        return (Z > 0).astype(np.int64)
    idx = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else np.argmax(Z, axis=1)
    return p["classes"][idx]


def _sigmoid(Z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow (exp of -|z| only), as scipy's ``expit``."""
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def proba_arrays(p: dict[str, np.ndarray],
                 X_raw: np.ndarray | Codes) -> tuple[np.ndarray, list[str]]:
    """Class probabilities (n, m) for raw features and the name of each column.

    The model kind comes from the npz (``model``); one written before it was stored falls back
    on the task (binary: a logistic, multiclass: a softmax).
    """
    task = str(p["task"])
    if task == "regression":
        raise ValueError("predict_proba needs a classifier: this model predicts values")
    model = str(p["model"]) if "model" in p else {"binary": "logistic",
                                                   "multiclass": "softmax"}.get(task, task)
    Z = _logits(p, X_raw)
    if task == "multilabel":
        return _sigmoid(Z), [str(n) for n in p["target_names"]]
    names = [str(c) for c in p["classes"]]
    if Z.shape[1] == 1:  # one logit for two classes
        q = _sigmoid(Z[:, 0])
        return np.column_stack([1.0 - q, q]), names
    if model == "ovr":
        P = _sigmoid(Z)
        return P / P.sum(axis=1, keepdims=True), names
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True), names


class LinearModel(PythonModel):
    """Raw features in, predictions out (labels for classes, a 0/1 table for multilabel), or
    the class probabilities with ``params={"predict_proba": True}``."""

    # No type hints on purpose: the logged signature validates the input (and MLflow would
    # warn about the missing hints at every load otherwise).
    _skip_type_hint_validation = True

    def load_context(self, context):
        self.p = _load(context.artifacts["model_npz"])

    def predict(self, context, model_input, params=None):
        return _predict(self.p, model_input, bool((params or {}).get("predict_proba", False)))


def _predict(p: dict[str, np.ndarray], model_input, proba: bool = False):
    """A DataFrame (columns by name) or an array (columns in order) -> predictions."""
    if "prep_inputs" in p:  # a table with categories or fill values: encode it first
        X = _encode(p, model_input)
    else:
        names = [str(n) for n in p["feature_names"]]
        if isinstance(model_input, pd.DataFrame):
            missing = [n for n in names if n not in model_input.columns]
            X = model_input.to_numpy() if missing else model_input[names].to_numpy()
        else:
            X = np.asarray(model_input)
        if X.ndim != 2 or X.shape[1] != len(names):
            raise ValueError(f"expected {len(names)} feature columns {names[:5]}..., "
                             f"got shape {X.shape}")
    if proba:
        P, columns = proba_arrays(p, X)
        return pd.DataFrame(P, columns=columns)
    out = predict_arrays(p, X)
    if out.ndim == 2:
        return pd.DataFrame(out, columns=[str(n) for n in p["target_names"]])
    return out


# ----------------------------------------------------------------------------- raw tables
# The same steps as ``pipeline.tabular.Tabular.transform`` (scikit-learn's SimpleImputer and
# OneHotEncoder there), from the ``prep_*`` arrays: numeric columns with their training fill
# values, then one 0/1 column per category; an unseen category is a row of zeros, counted.
def _as_text(col: pd.Series) -> np.ndarray:
    miss = pd.isna(col).to_numpy()
    out = np.array([str(v) for v in col.to_numpy(dtype=object)], dtype=object)
    out[miss] = np.nan
    return out


def _names(p: dict[str, np.ndarray], key: str) -> list[str]:
    return [str(v) for v in p["prep_" + key]]


def _encode(p: dict[str, np.ndarray], model_input) -> np.ndarray | Codes:
    """The raw table (categories, missing values) as the encoded matrix the weights expect
    (a sparse-layout model: as ``Codes``)."""
    inputs = _names(p, "inputs")
    if isinstance(model_input, pd.DataFrame):
        frame = model_input
    else:
        values = np.asarray(model_input, dtype=object)
        if values.ndim != 2 or values.shape[1] != len(inputs):
            raise ValueError(f"expected {len(inputs)} feature columns {inputs[:5]}..., "
                             f"got shape {values.shape}")
        frame = pd.DataFrame(values, columns=inputs)
    absent = [c for c in inputs if c not in frame.columns]
    if absent:
        raise ValueError(f"the table has no column {absent[0]!r}; expected the columns "
                         f"{inputs[:10]}")
    blocks = []
    numeric = _names(p, "numeric")
    Xn = np.zeros((len(frame), 0))
    if numeric:
        Xn = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        fill = p["prep_num_fill"]
        Xn = np.where(np.isnan(Xn) & ~np.isnan(fill), fill, Xn)
        blocks.append(Xn)
    off, flat = p["prep_offsets"], np.asarray(p["prep_categories"], dtype=object)
    unseen: dict[str, int] = {}
    all_codes = []
    for j, col in enumerate(_names(p, "categorical")):
        text = _as_text(frame[col])
        miss = pd.isna(text)
        if p["prep_cat_has_fill"][j]:
            text[miss] = str(p["prep_cat_fill"][j])
        codes = pd.Index(flat[off[j]:off[j + 1]]).get_indexer(text)
        seen = codes >= 0
        if not seen.all():
            unseen[col] = int((~seen).sum())
        all_codes.append(codes)
        if not bool(p.get("prep_sparse", False)):
            block = np.zeros((len(frame), off[j + 1] - off[j]))
            block[np.flatnonzero(seen), codes[seen]] = 1.0
            blocks.append(block)
    if unseen:
        import warnings

        shown = ", ".join(f"{c!r} ({n} rows)" for c, n in unseen.items())
        warnings.warn(f"categories not seen in training, encoded as all zeros: {shown}",
                      UserWarning, stacklevel=3)
    if bool(p.get("prep_sparse", False)):
        return Codes(Xn, all_codes, off)
    return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))


set_model(LinearModel())
