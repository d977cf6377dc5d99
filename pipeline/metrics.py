"""Per-task scores on one split, in numpy.

Why not ``sklearn.metrics``: importing it costs more than a whole small run; the tests check
every score here against scikit-learn's on the same inputs.
``score()`` is what run.py logs per split; ``val_score()`` is the single number tracked per
solver step (higher is better for classes, lower-is-better MSE for regression).

Metric names are ``<group>/<name>`` (``train/accuracy``, ``fit/n_passes``, ``step/objective``):
MLflow's run page draws one section per prefix before ``/``, so a user reads the curves, each
split's scores and the solver's facts side by side instead of ~30 charts in alphabetical order.
Weighted scores (``w``, a file's ``dataset.weight_column``): scikit-learn's ``sample_weight=``
semantics (weighted counts, weighted means; the loss the weighted mean); without ``w`` the
unweighted code runs unchanged, bit for bit.
The DVC metrics file nests the same names (``{"train": {"accuracy": ...}}``: ``dvc metrics show``
prints ``train.accuracy``); ``nested`` and ``flat`` convert between the two.
"""

from __future__ import annotations

import numpy as np

SEP = "/"
STEP, FIT = "step", "fit"  # per-step curves; what the solver did (final values, counts, times)

# The per-step validation metric of each task (logged as the curve ``step/val_<name>``).
STEP_METRIC = {"regression": "mse", "binary": "accuracy", "multiclass": "accuracy",
               "multilabel": "hamming_loss"}


def _mean(x: np.ndarray, w: np.ndarray | None) -> float:
    """Mean over rows (of every column), weighted by ``w`` (n,) when given."""
    if w is None:
        return float(np.mean(x))
    x = x.reshape(len(x), -1)
    return float(np.mean(np.average(x, axis=0, weights=w)))


def regression(y: np.ndarray, pred: np.ndarray,
               w: np.ndarray | None = None) -> dict[str, float]:
    """MSE, RMSE, MAE, R2 (each averaged over outputs when there are several)."""
    Y, P = y.reshape(len(y), -1), pred.reshape(len(pred), -1)
    err = P - Y
    if w is not None:
        mse = _mean(err**2, w)
        ss_res = (w[:, None] * err**2).sum(axis=0)
        ss_tot = (w[:, None] * (Y - np.average(Y, axis=0, weights=w)) ** 2).sum(axis=0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
        return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": _mean(np.abs(err), w),
                "r2": float(np.mean(r2))}
    mse = float(np.mean(err**2))
    ss_res = (err**2).sum(axis=0)
    ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(err))),
            "r2": float(np.mean(r2))}


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray):
    """Precision, recall, F1 per class from counts (0 where undefined, as zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return p, r, f


def roc_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties half
    (with ``w``: over pairs weighted by the product of their weights)."""
    if w is not None:
        _, group = np.unique(score, return_inverse=True)
        pos = np.bincount(group, weights=w * (y == 1))
        neg = np.bincount(group, weights=w * (y != 1))
        below = np.cumsum(neg) - neg  # negative weight under each score
        return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    # average ranks over ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, P: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean negative log-probability of the true class; ``P`` (n, m), rows renormalised."""
    eps = np.finfo(np.float64).eps
    P = np.clip(P, eps, 1 - eps)
    P = P / P.sum(axis=1, keepdims=True)
    return -_mean(np.log(P[np.arange(len(y)), np.asarray(y, np.int64)]), w)


def _count(mask: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Rows where ``mask`` holds, per column (their total weight with ``w``)."""
    if w is None:
        return mask.sum(axis=0)
    return (w.reshape(-1, *[1] * (mask.ndim - 1)) * mask).sum(axis=0)


def binary(y: np.ndarray, pred: np.ndarray, proba: np.ndarray,
           w: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of class 1, ROC AUC and log loss; ``proba`` (n, 2)."""
    P = proba if proba.ndim == 2 else np.column_stack([1 - proba, proba])
    tp = _count((pred == 1) & (y == 1), w)
    p, r, f = _prf(np.array([tp]), np.array([_count((pred == 1) & (y == 0), w)]),
                   np.array([_count((pred == 0) & (y == 1), w)]))
    out = {"accuracy": _mean(pred == y, w), "precision": float(p[0]),
           "recall": float(r[0]), "f1": float(f[0]), "log_loss": log_loss(y, P, w)}
    both = len(np.unique(y)) == 2 if w is None else _count(y == 1, w) * _count(y != 1, w) > 0
    if both:
        out["roc_auc"] = roc_auc(y, P[:, 1], w)
    return out


def multiclass(y: np.ndarray, pred: np.ndarray, proba: np.ndarray,
               w: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, macro F1 (over all m classes) and log loss; ``proba`` (n, m)."""
    m = proba.shape[1]
    C = np.zeros((m, m))
    np.add.at(C, (np.asarray(y, np.int64), np.asarray(pred, np.int64)), 1 if w is None else w)
    tp = np.diag(C)
    _, _, f = _prf(tp, C.sum(axis=0) - tp, C.sum(axis=1) - tp)
    return {"accuracy": _mean(pred == y, w), "macro_f1": float(f.mean()),
            "log_loss": log_loss(y, proba, w)}


def multilabel(Y: np.ndarray, pred: np.ndarray,
               w: np.ndarray | None = None) -> dict[str, float]:
    """Hamming loss, subset accuracy, micro and macro F1 over labels."""
    Y, P = Y > 0.5, pred > 0.5
    tp, fp, fn = _count(Y & P, w), _count(~Y & P, w), _count(Y & ~P, w)
    _, _, f = _prf(tp, fp, fn)
    _, _, micro = _prf(np.array([tp.sum()]), np.array([fp.sum()]), np.array([fn.sum()]))
    hamming = float(np.mean(Y != P)) if w is None else _mean((Y != P).mean(axis=1), w)
    return {"hamming_loss": hamming, "subset_accuracy": _mean((Y == P).all(axis=1), w),
            "micro_f1": float(micro[0]), "macro_f1": float(f.mean())}


def score(task: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None = None,
          w: np.ndarray | None = None) -> dict[str, float]:
    """The task's metrics for one split (``y`` and ``pred`` in the same units/encoding),
    weighted by the rows' weights ``w`` (n,) when given."""
    if len(y) == 0:
        return {}
    if task == "regression":
        return regression(y, pred, w)
    if task == "multilabel":
        return multilabel(y, pred, w)
    assert proba is not None, "classification metrics need probabilities"
    if task == "binary" and proba.shape[-1] <= 2:
        return binary(y, pred, proba, w)
    return multiclass(y, pred, proba, w)


def val_score(task: str, y: np.ndarray, Z: np.ndarray, w: np.ndarray | None = None) -> float:
    """Cheap numpy-only step score from logits ``Z`` (n, m) in the core's encoding."""
    if task == "regression":
        return _mean((Z.reshape(y.shape) - y) ** 2, w)
    if task == "multilabel":
        return _mean(((Z > 0) != (y > 0.5)).mean(axis=1), w) if w is not None else float(
            np.mean((Z > 0) != (y > 0.5)))
    pred = (Z[:, 0] > 0).astype(np.int64) if Z.shape[1] == 1 else np.argmax(Z, axis=1)
    return _mean(pred == y, w)


def nonzero_weights(W: np.ndarray, atol: float = 0.0) -> int:
    """How many weights are non-zero (the sparsity an L1 penalty buys)."""
    return int(np.count_nonzero(np.abs(W) > atol))


def grouped(group: str, values: dict[str, float]) -> dict[str, float]:
    """``{name: v}`` -> ``{"<group>/<name>": v}``, the names runs log."""
    return {f"{group}{SEP}{k}": v for k, v in values.items()}


def nested(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"train/accuracy": v}`` -> ``{"train": {"accuracy": v}}`` (the DVC metrics file)."""
    out: dict[str, dict[str, float]] = {}
    for key, v in values.items():
        group, _, name = key.partition(SEP)
        out.setdefault(group, {})[name] = v
    return out


def flat(values: dict[str, dict[str, float]]) -> dict[str, float]:
    """The inverse of ``nested``."""
    return {f"{g}{SEP}{k}": v for g, inner in values.items() for k, v in inner.items()}
