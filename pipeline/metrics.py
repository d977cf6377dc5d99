"""Per-task scores on one split (scikit-learn's implementations, so numbers match theirs).

``score()`` is what run.py logs per split; ``val_score()`` is the single number tracked per
solver step (higher is better for classes, lower-is-better MSE for regression).
"""

from __future__ import annotations

import numpy as np

# The per-step validation metric of each task (logged as ``val_<name>`` history).
STEP_METRIC = {"regression": "mse", "binary": "accuracy", "multiclass": "accuracy",
               "multilabel": "hamming_loss"}


def regression(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE, R2 (averaged over outputs for several)."""
    from sklearn import metrics as skm

    mse = float(skm.mean_squared_error(y, pred))
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(skm.mean_absolute_error(y, pred)),
            "r2": float(skm.r2_score(y, pred))}


def binary(y: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of class 1, ROC AUC and log loss; ``proba`` (n, 2)."""
    from sklearn import metrics as skm

    p1 = proba[:, 1] if proba.ndim == 2 else proba
    out = {"accuracy": float(skm.accuracy_score(y, pred)),
           "precision": float(skm.precision_score(y, pred, zero_division=0)),
           "recall": float(skm.recall_score(y, pred, zero_division=0)),
           "f1": float(skm.f1_score(y, pred, zero_division=0)),
           "log_loss": float(skm.log_loss(y, np.clip(p1, 1e-15, 1 - 1e-15), labels=[0, 1]))}
    if len(np.unique(y)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, p1))
    return out


def multiclass(y: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1 and log loss; ``proba`` (n, m) rows summing to 1."""
    from sklearn import metrics as skm

    m = proba.shape[1]
    P = np.clip(proba, 1e-15, None)
    P = P / P.sum(axis=1, keepdims=True)
    return {"accuracy": float(skm.accuracy_score(y, pred)),
            "macro_f1": float(skm.f1_score(y, pred, average="macro", labels=np.arange(m),
                                         zero_division=0)),
            "log_loss": float(skm.log_loss(y, P, labels=np.arange(m)))}


def multilabel(Y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Hamming loss, subset accuracy, micro and macro F1 over labels."""
    from sklearn import metrics as skm

    Y, pred = Y.astype(np.int64), pred.astype(np.int64)
    return {"hamming_loss": float(skm.hamming_loss(Y, pred)),
            "subset_accuracy": float(skm.accuracy_score(Y, pred)),
            "micro_f1": float(skm.f1_score(Y, pred, average="micro", zero_division=0)),
            "macro_f1": float(skm.f1_score(Y, pred, average="macro", zero_division=0))}


def score(task: str, y: np.ndarray, pred: np.ndarray,
          proba: np.ndarray | None = None) -> dict[str, float]:
    """The task's metrics for one split (``y`` and ``pred`` in the same units/encoding)."""
    if len(y) == 0:
        return {}
    if task == "regression":
        return regression(y, pred)
    if task == "multilabel":
        return multilabel(y, pred)
    assert proba is not None, "classification metrics need probabilities"
    if task == "binary" and proba.shape[-1] <= 2:
        return binary(y, pred, proba)
    return multiclass(y, pred, proba)


def val_score(task: str, y: np.ndarray, Z: np.ndarray) -> float:
    """Cheap numpy-only step score from logits ``Z`` (n, m) in the core's encoding."""
    if task == "regression":
        return float(np.mean((Z.reshape(y.shape) - y) ** 2))
    if task == "multilabel":
        return float(np.mean((Z > 0) != (y > 0.5)))
    pred = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else np.argmax(Z, axis=1)
    return float(np.mean(pred == y))


def nonzero_weights(W: np.ndarray, atol: float = 0.0) -> int:
    """How many weights are non-zero (the sparsity an L1 penalty buys)."""
    return int(np.count_nonzero(np.abs(W) > atol))
