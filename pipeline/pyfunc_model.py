"""The MLflow pyfunc model, logged as code ("models from code"): numpy-only prediction.

MLflow copies THIS FILE next to the logged model and executes it on
``mlflow.pyfunc.load_model``; the pipeline never imports it. It must therefore stay
self-contained: numpy, pandas and mlflow only, no numba, no ``pipeline`` import, no pickle.
The weights, the scaler and the class labels come from the ``model_npz`` artifact (written by
``tracking.save_model_npz``). Predict repeats the pipeline's own steps: select and standardise
the raw feature columns, ``Z = X W + b``, then the task's decision rule, and returns targets in
the source's units/labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


def _load(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def predict_arrays(p: dict[str, np.ndarray], X_raw: np.ndarray):
    """Predictions for raw features ``X_raw`` (n, n_features_in) given the npz arrays ``p``."""
    X = (np.asarray(X_raw, dtype=np.float64)[:, p["keep"]] - p["mean"]) / p["scale"]
    Z = X @ p["W"] + p["b"]
    task = str(p["task"])
    if task == "regression":
        Y = Z * p["y_scale"] + p["y_mean"]
        return Y[:, 0] if Y.shape[1] == 1 else Y
    if task == "multilabel":
        return (Z > 0).astype(np.int64)
    idx = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else np.argmax(Z, axis=1)
    return p["classes"][idx]


class LinearModel(PythonModel):
    """Raw features in, predictions out (labels for classes, a 0/1 table for multilabel)."""

    # No type hints on purpose: the logged signature validates the input (and MLflow would
    # warn about the missing hints at every load otherwise).
    _skip_type_hint_validation = True

    def load_context(self, context):
        self.p = _load(context.artifacts["model_npz"])

    def predict(self, context, model_input, params=None):
        return _predict(self.p, model_input)


def _predict(p: dict[str, np.ndarray], model_input):
    """A DataFrame (columns by name) or an array (columns in order) -> predictions."""
    names = [str(n) for n in p["feature_names"]]
    if isinstance(model_input, pd.DataFrame):
        missing = [n for n in names if n not in model_input.columns]
        X = model_input.to_numpy() if missing else model_input[names].to_numpy()
    else:
        X = np.asarray(model_input)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"expected {len(names)} feature columns {names[:5]}..., "
                         f"got shape {X.shape}")
    out = predict_arrays(p, X)
    if out.ndim == 2:
        return pd.DataFrame(out, columns=[str(n) for n in p["target_names"]])
    return out


set_model(LinearModel())
