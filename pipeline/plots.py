"""Figures of one run, written as PNG files (matplotlib's Agg backend: no display needed).

Each ``<name>_figure`` function builds one figure (the tests read its data back through
matplotlib's objects); the function of the same name without the suffix saves it to ``out_dir``
and returns the path; ``make_all`` chooses the ones that fit the task. tracking.py uploads the
files; nothing here knows about MLflow.

Why these choices: the PNGs are read in MLflow's artifact viewer, which shows them at their
pixel size, so figures are ~900 px wide with 12-14 pt text; coefficients are signed (a sign
is half of what a weight says) and ordered by size; the ROC legend carries its AUC; a closed
form's objective is a single point, drawn as a marker (a line of one point is invisible).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

DPI = 100
STYLE: dict[Any, Any] = {"font.size": 12, "axes.titlesize": 14, "axes.labelsize": 13,
                         "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 12,
                         "axes.grid": True, "grid.alpha": 0.3}
TOP = 30  # coefficients shown (the largest |w|)
MARKERS_UP_TO = 30  # steps: fewer points are drawn with markers, each one visible


def _styled(build: F) -> F:
    """Run ``build`` under ``STYLE`` (matplotlib reads text sizes as each text is made)."""
    @functools.wraps(build)
    def styled(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return build(*args, **kwargs)
    return styled  # type: ignore[return-value]


def _subplots(figsize: tuple[float, float]):
    """A figure and its axes without pyplot (no global state, no GUI backend, 0.3 s less
    import); ``Figure.savefig`` renders PNG with Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    return fig, fig.subplots()


@_styled
def _save(fig, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    fig.savefig(path, dpi=DPI)
    return path


def _column_labels(ax, labels: list[str]) -> None:
    """Column labels, slanted only when upright ones would run into each other."""
    slant = len(labels) * max((len(t) for t in labels), default=0) > 40
    ax.set_xticklabels(labels, rotation=40 if slant else 0, ha="right" if slant else "center")


# ----------------------------------------------------------------------------- figures
@_styled
def objective_figure(history: list[float]):
    """Objective F per solver step (log scale when it stays positive and spans a decade)."""
    fig, ax = _subplots((9, 5))
    h = np.asarray(history, dtype=float)
    steps = np.arange(1, len(h) + 1)
    ax.plot(steps, h, marker="o" if len(h) <= MARKERS_UP_TO else None, lw=2, ms=7)
    if len(h) and np.all(h > 0) and h.max() > 10 * h.min():
        ax.set_yscale("log")
    title = "Objective per solver step"
    if len(h) == 1:  # a direct solver: one value, no curve
        title += " (one point: closed form)"
        ax.annotate(f"F = {h[0]:.6g}", (1, h[0]), textcoords="offset points", xytext=(10, 10))
        ax.set_xticks([1])
    elif len(h):
        ax.annotate(f"final F = {h[-1]:.6g}", (steps[-1], h[-1]), textcoords="offset points",
                    xytext=(-10, 12), ha="right")
    ax.set(xlabel="step", ylabel="objective F", title=title)
    return fig


@_styled
def confusion_figure(y: np.ndarray, pred: np.ndarray, labels: list[str]):
    """Confusion matrix on the test split (rows: true class, columns: predicted)."""
    m = len(labels)
    C = np.zeros((m, m), dtype=np.int64)
    np.add.at(C, (np.asarray(y, np.int64), np.asarray(pred, np.int64)), 1)
    side = min(12.0, max(6.0, 2.5 + 0.6 * m))
    fig, ax = _subplots((side + 1.2, side))
    image = ax.imshow(C, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="test rows")
    size = 14 if m <= 5 else 11 if m <= 12 else 8
    for i in range(m):
        for j in range(m):
            dark = C[i, j] > 0.6 * C.max()
            ax.text(j, i, str(C[i, j]), ha="center", va="center", fontsize=size,
                    color="white" if dark else "black")
    acc = np.trace(C) / max(1, C.sum())
    ax.set(xticks=range(m), yticks=range(m), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix (test, accuracy {acc:.3f})")
    _column_labels(ax, labels)
    ax.set_yticklabels(labels)
    ax.grid(False)
    return fig


@_styled
def roc_figure(y: np.ndarray, score: np.ndarray):
    """ROC curve of a binary classifier on the test split, its AUC in the legend."""
    from pipeline.metrics import roc_auc

    order = np.argsort(-score, kind="mergesort")
    hits = np.asarray(y)[order] == 1
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(1, hits.sum())])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max(1, (~hits).sum())])
    fig, ax = _subplots((6.5, 6))
    ax.plot(fpr, tpr, lw=2.5, label=f"ROC, AUC = {roc_auc(np.asarray(y), score):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", label="chance, AUC = 0.5")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)",
           xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax.legend(loc="lower right")
    return fig


@_styled
def predicted_vs_true_figure(y: np.ndarray, pred: np.ndarray):
    """Scatter of predictions against targets (regression, test split), R^2 in the legend."""
    from pipeline.metrics import regression

    fig, ax = _subplots((6.5, 6))
    r2 = regression(np.asarray(y), np.asarray(pred))["r2"]
    ax.scatter(np.ravel(y), np.ravel(pred), s=25, alpha=0.6, label=f"test rows, R² = {r2:.3f}")
    lo, hi = float(min(np.min(y), np.min(pred))), float(max(np.max(y), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], ls="--", c="grey", label="predicted = true")
    ax.set(xlabel="true", ylabel="predicted", title="Predicted vs true (test)")
    ax.legend(loc="upper left")
    return fig


def coefficient_order(W: np.ndarray, top: int = TOP) -> np.ndarray:
    """Rows of ``W`` (features) by decreasing size, the largest ``top``: |w| for one output,
    the largest |w| over outputs for several."""
    size = np.abs(W.reshape(W.shape[0], -1)).max(axis=1)
    return np.argsort(-size, kind="mergesort")[:top]


@_styled
def coefficients_figure(W: np.ndarray, names: list[str], output_names: list[str] | None = None,
                        top: int = TOP, output_label: str = "output"):
    """The signed weights of the ``top`` largest features, largest first.

    One output: horizontal bars (blue positive, red negative) on a zero line. Several outputs
    (classes, labels, targets): a features x outputs heat map on a diverging scale centred at 0.
    The weights act on standardised features, so their sizes compare across features.
    """
    W2 = W.reshape(W.shape[0], -1)
    order = coefficient_order(W2, top)
    rows = [names[i] for i in order]
    height = 1.5 + 0.32 * len(order)
    if W2.shape[1] == 1:
        w = W2[order, 0]
        fig, ax = _subplots((9, max(4.0, height)))
        ypos = np.arange(len(order))[::-1]
        ax.barh(ypos, w, color=np.where(w >= 0, "tab:blue", "tab:red"))
        ax.axvline(0, c="black", lw=1)
        ax.set_yticks(ypos)
        ax.set_yticklabels(rows)
        ax.set(xlabel="weight (standardised features)",
               title=f"Coefficients, largest |w| first (top {len(order)} of {W2.shape[0]})")
        return fig
    m = W2.shape[1]
    outs = output_names if output_names and len(output_names) == m else [str(j) for j in
                                                                         range(m)]
    fig, ax = _subplots((min(16.0, 4 + 0.7 * m), max(4.0, height)))
    lim = float(np.abs(W2[order]).max()) or 1.0
    image = ax.imshow(W2[order], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    fig.colorbar(image, ax=ax, label="weight (standardised features)")
    ax.set_yticks(np.arange(len(order)))
    ax.set_yticklabels(rows)
    ax.set_xticks(np.arange(m))
    _column_labels(ax, outs)
    ax.set(xlabel=output_label, title=f"Coefficients, largest |w| first (top {len(order)} "
                                  f"of {W2.shape[0]})")
    ax.grid(False)
    return fig


# ----------------------------------------------------------------------------- files
def objective(history: list[float], out_dir: Path) -> Path:
    return _save(objective_figure(history), out_dir, "objective.png")


def confusion(y: np.ndarray, pred: np.ndarray, labels: list[str], out_dir: Path) -> Path:
    return _save(confusion_figure(y, pred, labels), out_dir, "confusion_matrix.png")


def roc(y: np.ndarray, score: np.ndarray, out_dir: Path) -> Path:
    return _save(roc_figure(y, score), out_dir, "roc.png")


def predicted_vs_true(y: np.ndarray, pred: np.ndarray, out_dir: Path) -> Path:
    return _save(predicted_vs_true_figure(y, pred), out_dir, "predicted_vs_true.png")


def coefficients(W: np.ndarray, names: list[str], out_dir: Path,
                 output_names: list[str] | None = None, output_label: str = "output") -> Path:
    return _save(coefficients_figure(W, names, output_names, output_label=output_label),
                 out_dir, "coefficients.png")


def make_all(task: str, history: list[float], W: np.ndarray, feature_names: list[str],
             y_test: np.ndarray, pred_test: np.ndarray, proba_test: np.ndarray | None,
             class_labels: list[str], out_dir: Path,
             output_names: list[str] | None = None) -> list[Path]:
    """Every figure that fits ``task``; ``y_test``/``pred_test`` in the core's encoding.

    ``output_names`` label the columns of ``W`` (default: the class labels when there is one
    column per class).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    outs: Any = output_names or (class_labels if W.ndim == 2 and W.shape[1] == len(class_labels)
                                 else None)
    kind = {"regression": "target", "multilabel": "label"}.get(task, "class")
    paths = [objective(history, out_dir), coefficients(W, feature_names, out_dir, outs, kind)]
    if len(y_test) == 0:
        return paths
    if task == "regression":
        paths.append(predicted_vs_true(y_test, pred_test, out_dir))
    elif task in ("binary", "multiclass"):
        paths.append(confusion(y_test, pred_test, class_labels, out_dir))
        if task == "binary" and proba_test is not None and len(np.unique(y_test)) == 2:
            paths.append(roc(y_test, proba_test[:, -1], out_dir))
    return paths
