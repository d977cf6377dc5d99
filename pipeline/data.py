"""Datasets: scikit-learn's bundled sets, synthetic generators and user CSV/Parquet files.

``load()`` returns a ``Dataset``: a seeded train/validation/test split (stratified for classes),
features standardised with statistics of the training split only, and targets encoded as the
training core expects. Everything that can be wrong with the data (NaN, one class only, a
continuous target for a classifier) is found here, before any MLflow run starts, and reported
as a ``DataError`` that names the column.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from pipeline import sources
from pipeline.config import (
    MODELS_FOR_TASK,
    DatasetConfig,
    FileDatasetConfig,
    SyntheticDatasetConfig,
)

MAX_CLASSES = 100


class DataError(ValueError):
    """The data cannot be used for the chosen model."""


@dataclass
class Scaler:
    """Column selection and standardisation fitted on the training split; kept with the model.

    ``X_std = (X[:, keep] - mean) / scale``; regression targets likewise with ``y_mean``,
    ``y_scale`` (predictions are mapped back).
    """

    keep: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    y_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_scale: np.ndarray = field(default_factory=lambda: np.ones(0))

    def transform(self, X_raw: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((X_raw[:, self.keep] - self.mean) / self.scale)


@dataclass
class Dataset:
    """A split, scaled dataset. ``X_*`` standardised; ``raw[split]`` the untouched features.

    ``y_*``: linear (n,) or (n, m) standardised floats; logistic (n,) 0/1; softmax/ovr (n,)
    class indices into ``classes``; multilabel (n, m) 0/1.
    """

    name: str
    task: str
    feature_names: list[str]
    target_names: list[str]
    classes: np.ndarray | None
    class_names: list[str]
    scaler: Scaler
    X: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    digest: str

    def y_original(self, split: str) -> np.ndarray:
        """Targets of ``split`` in the units/labels of the source data."""
        return decode_targets(self, self.y[split])


# ----------------------------------------------------------------------------- checks
def _check_nan(X: np.ndarray, y: np.ndarray, features: list[str], targets: list[str]) -> None:
    bad = np.isnan(X).sum(axis=0)
    for j in np.flatnonzero(bad):
        raise DataError(f"column {features[j]!r} contains NaN ({bad[j]} rows); "
                        "drop or impute them first")
    if y.dtype.kind == "f":
        ybad = np.isnan(y.reshape(len(y), -1)).sum(axis=0)
        for c in np.flatnonzero(ybad):
            raise DataError(f"target column {targets[c]!r} contains NaN ({ybad[c]} rows)")
    elif y.dtype.kind == "O":
        import pandas as pd

        missing = pd.isna(y).reshape(len(y), -1).sum(axis=0)
        for c in np.flatnonzero(missing):
            raise DataError(f"target column {targets[c]!r} contains NaN ({missing[c]} rows)")


def infer_task(y: np.ndarray, model: str, targets: list[str]) -> str:
    """The task a file's target supports for ``model``, or a DataError saying why not."""
    name = ", ".join(repr(t) for t in targets)
    if model == "linear":
        if y.dtype.kind not in "fiub":
            raise DataError(f"target column {name} is not numeric (dtype {y.dtype}); "
                            "model=linear needs numbers")
        return "regression"
    if model == "multilabel":
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise DataError(f"model=multilabel needs several 0/1 target columns; {name} "
                            "is not that")
        return "multilabel"
    if y.ndim != 1:
        raise DataError(f"model={model} needs one target column; got {len(targets)}: {name}")
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
        raise DataError(f"target column {name} looks continuous (non-integer values such as "
                        f"{y[np.mod(y, 1) != 0][0]!r}); model={model} needs class labels")
    n_classes = len(np.unique(y))
    if n_classes > MAX_CLASSES:
        raise DataError(f"target column {name} has {n_classes} distinct values; model={model} "
                        f"needs class labels (at most {MAX_CLASSES} classes)")
    return "binary" if n_classes <= 2 else "multiclass"


def _check_classes(y: np.ndarray, model: str, name: str, target: str) -> np.ndarray:
    """Class labels of ``y``: at least two, exactly two for logistic."""
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"target column {target!r} of dataset={name} has one class only "
                        f"({classes[0]!r}); model={model} needs at least 2")
    if model == "logistic" and len(classes) != 2:
        raise DataError(f"target column {target!r} of dataset={name} has {len(classes)} classes; "
                        "model=logistic needs exactly 2 (use model=softmax or model=ovr)")
    return classes


# ----------------------------------------------------------------------------- split, scale
def _split(n: int, y: np.ndarray, stratify: bool, val: float, test: float,
           seed: int) -> dict[str, np.ndarray]:
    """Seeded index split; per class when ``stratify`` (every class keeps a training row)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(n)]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for idx in groups:
        idx = rng.permutation(idx)
        n_te = int(round(test * len(idx)))
        n_va = int(round(val * len(idx)))
        if n_te + n_va >= len(idx):  # tiny class: keep one row for training
            n_va = max(0, len(idx) - 1 - n_te)
            n_te = min(n_te, len(idx) - 1)
        parts["test"].append(idx[:n_te])
        parts["val"].append(idx[n_te:n_te + n_va])
        parts["train"].append(idx[n_te + n_va:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def fit_scaler(X: np.ndarray, y: np.ndarray | None) -> Scaler:
    """Standardisation statistics of the training split; zero-variance columns dropped."""
    std = X.std(axis=0)
    keep = np.flatnonzero(std > 1e-12 * np.maximum(1.0, np.abs(X).max(axis=0)))
    if keep.size == 0:
        raise DataError("every feature column is constant on the training split")
    scaler = Scaler(keep=keep, mean=X[:, keep].mean(axis=0), scale=std[keep])
    if y is not None:
        Y = y.reshape(len(y), -1)
        sd = Y.std(axis=0)
        scaler.y_mean, scaler.y_scale = Y.mean(axis=0), np.where(sd > 0, sd, 1.0)
    return scaler


def decode_targets(data: Dataset, y: np.ndarray) -> np.ndarray:
    """Encoded targets or predictions back to source units/labels."""
    if data.task == "regression":
        s = data.scaler
        out = y.reshape(len(y), -1) * s.y_scale + s.y_mean
        return out[:, 0] if y.ndim == 1 else out
    if data.task == "multilabel" or data.classes is None:
        return y
    return data.classes[np.asarray(y, dtype=np.int64)]


def _digest(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(y).astype(str if y.dtype.kind == "O" else y.dtype).tobytes())
    return h.hexdigest()[:16]


def load(d: DatasetConfig, model: str, seed: int) -> Dataset:
    """Load, check, split and standardise ``d`` for ``model``; raise DataError when it can't fit."""
    if isinstance(d, SyntheticDatasetConfig):
        source = sources.synthetic(d.task, d.n, d.k, d.n_outputs, d.noise, d.seed)
    elif isinstance(d, FileDatasetConfig):
        source = sources.read_table(d.path, list(d.target), d.features, DataError)
    else:
        source = sources.bundled(d.name)
    X, y, features, targets, names = source
    _check_nan(X, y, features, targets)
    task = infer_task(y, model, targets) if d.task == "auto" else d.task
    if model not in MODELS_FOR_TASK[task]:
        what = (f" with {len(np.unique(y))} classes" if task in ("binary", "multiclass")
                else "")
        raise DataError(f"model={model} cannot learn dataset={d.name}: target "
                        f"{', '.join(map(repr, targets))} makes it a {task} task{what}; "
                        f"allowed models: {', '.join(MODELS_FOR_TASK[task])}")
    classes = None
    if task in ("binary", "multiclass"):
        classes = _check_classes(y, model, d.name, targets[0])
        y_enc = np.searchsorted(classes, y).astype(np.int64)
    elif task == "multilabel":
        y_enc = y.astype(np.float64)
        for c in np.flatnonzero(y_enc.min(axis=0) == y_enc.max(axis=0)):
            raise DataError(f"label column {targets[c]!r} of dataset={d.name} is constant; "
                            "each label needs both 0 and 1")
    else:
        y_enc = y.astype(np.float64)
    parts = _split(len(X), y_enc, classes is not None, d.val_size, d.test_size, seed)
    tr = parts["train"]
    scaler = fit_scaler(X[tr], y_enc[tr] if task == "regression" else None)
    Xs, ys, raw = {}, {}, {}
    for split, idx in parts.items():
        raw[split] = X[idx]
        Xs[split] = scaler.transform(X[idx])
        yy = y_enc[idx]
        if task == "regression":
            yy = (yy.reshape(len(idx), -1) - scaler.y_mean) / scaler.y_scale
            yy = np.ascontiguousarray(yy[:, 0] if y_enc.ndim == 1 else yy)
        ys[split] = yy
    if classes is not None and (names is None or len(names) != len(classes)):
        names = [str(c) for c in classes]
    return Dataset(name=d.name, task=task, feature_names=features, target_names=targets,
                   classes=classes, class_names=names or [], scaler=scaler, X=Xs, y=ys,
                   raw=raw, digest=_digest(X, y))
