"""Figures of one run, written as PNG files (matplotlib's Agg backend: no display needed).

Each function saves one figure to ``out_dir`` and returns its path; ``make_all`` chooses the
ones that fit the task. tracking.py uploads the files; nothing here knows about MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _subplots(figsize: tuple[float, float]):
    """A figure and its axes without pyplot (no global state, no GUI backend, 0.3 s less
    import); ``Figure.savefig`` renders PNG with Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _save(fig, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    fig.savefig(path, dpi=80)
    return path


def objective(history: list[float], out_dir: Path) -> Path:
    """Objective F per solver step (log scale when it stays positive)."""
    fig, ax = _subplots((5, 3.5))
    h = np.asarray(history, dtype=float)
    ax.plot(np.arange(1, len(h) + 1), h)
    if len(h) and np.all(h > 0):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="objective F", title="Objective per step")
    return _save(fig, out_dir, "objective.png")


def confusion(y: np.ndarray, pred: np.ndarray, labels: list[str], out_dir: Path) -> Path:
    """Confusion matrix on the test split (rows: true class, columns: predicted)."""
    m = len(labels)
    C = np.zeros((m, m), dtype=np.int64)
    np.add.at(C, (np.asarray(y, np.int64), np.asarray(pred, np.int64)), 1)
    side = max(3.5, 1.5 + 0.45 * m)
    fig, ax = _subplots((side, side))
    ax.imshow(C, cmap="Blues", vmin=0)
    for i in range(m):
        for j in range(m):
            dark = C[i, j] > 0.6 * C.max()
            ax.text(j, i, str(C[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set(xticks=range(m), yticks=range(m), xlabel="predicted", ylabel="true",
           title="Confusion matrix (test)")
    ax.set_xticklabels(labels, rotation=90 if m > 4 else 0, fontsize=7)
    ax.set_yticklabels(labels, fontsize=7)
    return _save(fig, out_dir, "confusion_matrix.png")


def roc(y: np.ndarray, score: np.ndarray, out_dir: Path) -> Path:
    """ROC curve of a binary classifier on the test split."""
    order = np.argsort(-score, kind="mergesort")
    hits = np.asarray(y)[order] == 1
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(1, hits.sum())])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max(1, (~hits).sum())])
    fig, ax = _subplots((4, 4))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], ls="--", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    return _save(fig, out_dir, "roc.png")


def predicted_vs_true(y: np.ndarray, pred: np.ndarray, out_dir: Path) -> Path:
    """Scatter of predictions against targets (regression, test split)."""
    fig, ax = _subplots((4, 4))
    ax.scatter(np.ravel(y), np.ravel(pred), s=8, alpha=0.6)
    lo, hi = float(min(np.min(y), np.min(pred))), float(max(np.max(y), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], ls="--", c="grey")
    ax.set(xlabel="true", ylabel="predicted", title="Predicted vs true (test)")
    return _save(fig, out_dir, "predicted_vs_true.png")


def coefficients(W: np.ndarray, names: list[str], out_dir: Path, top: int = 30) -> Path:
    """Largest |weights| per feature (summed over outputs), largest first."""
    mag = np.abs(W).sum(axis=1)
    order = np.argsort(mag)[::-1][:top]
    fig, ax = _subplots((5, 1 + 0.22 * len(order)))
    ax.barh(np.arange(len(order))[::-1], mag[order])
    ax.set_yticks(np.arange(len(order))[::-1])
    ax.set_yticklabels([names[i] for i in order], fontsize=7)
    ax.set(xlabel="|w| (summed over outputs)", title="Coefficient magnitudes")
    return _save(fig, out_dir, "coefficients.png")


def make_all(task: str, history: list[float], W: np.ndarray, feature_names: list[str],
             y_test: np.ndarray, pred_test: np.ndarray, proba_test: np.ndarray | None,
             class_labels: list[str], out_dir: Path) -> list[Path]:
    """Every figure that fits ``task``; ``y_test``/``pred_test`` in the core's encoding."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [objective(history, out_dir), coefficients(W, feature_names, out_dir)]
    if len(y_test) == 0:
        return paths
    if task == "regression":
        paths.append(predicted_vs_true(y_test, pred_test, out_dir))
    elif task in ("binary", "multiclass"):
        paths.append(confusion(y_test, pred_test, class_labels, out_dir))
        if task == "binary" and proba_test is not None and len(np.unique(y_test)) == 2:
            paths.append(roc(y_test, proba_test[:, -1], out_dir))
    return paths
