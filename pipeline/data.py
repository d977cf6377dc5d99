"""Datasets: scikit-learn's bundled sets, synthetic generators and user CSV/Parquet files.

``load()`` returns a ``Dataset``: a seeded train/validation/test split (stratified for classes),
features standardised with statistics of the training split only, and targets encoded as the
training core expects. A user file's categorical columns are one-hot encoded and its missing
values filled with what the training split gives (``pipeline.tabular``); its
``dataset.weight_column`` gives row weights, split with the rows. Everything that can
be wrong with the data (NaN, one class only, a continuous target for a classifier) is found
here, before any MLflow run starts, and reported as a ``DataError`` that names the column.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline import sources, tabular
from pipeline.config import (
    MODELS_FOR_TASK,
    DatasetConfig,
    FileDatasetConfig,
    SyntheticDatasetConfig,
)
from pipeline.config_dataset import categorical_spec, streams
from pipeline.validation import check_targets

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

    def transform(self, X_raw: Any) -> Any:
        """(n, n_raw) -> (n, len(keep)); a scipy.sparse ``X_raw`` gives CSR, where only the
        columns that the scaler changes (numeric ones) are made dense: 0/1 columns stay sparse."""
        if hasattr(X_raw, "tocsr"):
            return _sparse_transform(self, X_raw.tocsr())
        return np.ascontiguousarray((X_raw[:, self.keep] - self.mean) / self.scale)


def _sparse_transform(s: Scaler, X_raw: Any) -> Any:
    """``Scaler.transform`` of a CSR matrix: ``(x - mean) / scale`` where that changes x, in
    the same arithmetic as the dense path, and the untouched columns as they are."""
    import scipy.sparse as sp

    Xk = X_raw[:, s.keep]
    touched = (s.mean != 0) | (s.scale != 1)
    if not touched.any():
        return Xk.tocsr()
    cols = np.flatnonzero(touched)
    dense = (Xk[:, cols].toarray() - s.mean[cols]) / s.scale[cols]
    out = sp.hstack([sp.csr_matrix(dense), Xk[:, np.flatnonzero(~touched)]], format="csr")
    order = np.argsort(np.r_[cols, np.flatnonzero(~touched)], kind="stable")
    if not np.array_equal(order, np.arange(len(order))):  # numeric columns not all first
        out = out[:, order].tocsr()
    out.sort_indices()
    return out


@dataclass
class Dataset:
    """A split, scaled dataset. ``X_*`` standardised; ``raw[split]`` the features before it.

    ``y_*``: linear (n,) or (n, m) standardised floats; logistic (n,) 0/1; softmax/ovr (n,)
    class indices into ``classes``; multilabel (n, m) 0/1.

    A user file with categorical columns or ``dataset.missing`` set has ``prep`` (what was
    learnt on its training split: ``pipeline.tabular``); then ``raw[split]`` is the encoded
    matrix (filled, one-hot), ``tables[split]`` the untouched rows of the file (what the
    logged model takes) and ``feature_names`` the encoded columns' names; ``facts`` are the
    ``data/*`` metrics of the run (unseen categories, filled cells).

    ``weights[split]`` (n_split,): a file's ``dataset.weight_column`` (None without one), the
    ``sample_weight`` of the fit and of every split's scores.
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
    prep: tabular.Tabular | None = None
    tables: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, float] = field(default_factory=dict)
    weights: dict[str, np.ndarray] | None = None

    def input_example(self, n: int = 5) -> Any:
        """The first ``n`` test rows as the logged model takes them (a DataFrame)."""
        import pandas as pd

        if self.prep is None or "test" not in self.tables:
            return pd.DataFrame(self.raw["test"][:n], columns=self.feature_names)
        frame = self.tables["test"].head(n).copy()
        for c in frame.columns:  # columns keep their types (MLflow's schema refuses int64 ->
            if isinstance(frame[c].dtype, pd.CategoricalDtype):  # float64); categories: text
                frame[c] = frame[c].astype(object)
        return frame

    def y_original(self, split: str) -> np.ndarray:
        """Targets of ``split`` in the units/labels of the source data."""
        return decode_targets(self, self.y[split])


# ----------------------------------------------------------------------------- checks
def _check_finite(X: np.ndarray, y: np.ndarray, features: list[str],
                  targets: list[str], nan_ok: bool = False) -> None:
    """NaN (unless ``nan_ok``: filled later) or inf in a column: an error naming it (an inf
    column would otherwise have no finite spread and be dropped as constant, silently)."""
    bad = np.isinf(X) if nan_ok else ~np.isfinite(X)
    for j in np.flatnonzero(bad.any(axis=0)):
        raise DataError(f"column {features[j]!r} contains {_what_is_not_finite(X[:, j])}; "
                        "drop or impute them first")
    if y.dtype.kind in "fc":
        Y = y.reshape(len(y), -1)
        for c in np.flatnonzero(~np.isfinite(Y).all(axis=0)):
            raise DataError(f"target column {targets[c]!r} contains "
                            f"{_what_is_not_finite(Y[:, c])}; drop those rows first")
    elif y.dtype.kind == "O":
        import pandas as pd

        missing = pd.isna(y).reshape(len(y), -1).sum(axis=0)
        for c in np.flatnonzero(missing):
            raise DataError(f"target column {targets[c]!r} contains NaN ({missing[c]} rows); "
                            "drop those rows first")


def _what_is_not_finite(col: np.ndarray) -> str:
    rows = np.flatnonzero(~np.isfinite(col))
    kinds = [k for k, hit in (("NaN", np.isnan(col).any()), ("inf", np.isinf(col).any())) if hit]
    return f"{' and '.join(kinds)} ({rows.size} rows, e.g. row {rows[0]})"


def check_target(model: str, y: np.ndarray, name: str, targets: list[str],
                 where: str = "") -> tuple[np.ndarray, np.ndarray | None]:
    """``pipeline.validation.check_targets`` (the API's rule, the only copy) as a DataError
    that names the target column(s): the API and the app accept the same targets."""
    try:
        return check_targets(model, y, len(y))
    except (TypeError, ValueError) as err:
        msg = re.sub(r"label column (\d+) of y",
                     lambda m: f"label column {targets[int(m[1])]!r}", str(err))
        cols = ", ".join(repr(t) for t in targets)
        raise DataError(f"target {cols} of dataset={name}{where}: {msg}") from None


def infer_task(model: str, classes: np.ndarray | None, targets: list[str]) -> str:
    """The task of a file's target for ``model`` (its target already checked for ``model``)."""
    if model == "linear":
        return "regression"
    if model == "multilabel":
        return "multilabel"
    assert classes is not None
    if len(classes) > MAX_CLASSES:
        raise DataError(f"target column {', '.join(map(repr, targets))} has {len(classes)} "
                        f"distinct values; model={model} needs class labels (at most "
                        f"{MAX_CLASSES} classes)")
    return "binary" if len(classes) <= 2 else "multiclass"


def _check_splits(parts: dict[str, np.ndarray], d: DatasetConfig) -> None:
    """Every requested split gets rows, and training at least two: else a DataError (a model
    fitted on one row, or scored on none, is not a result)."""
    n = {k: len(v) for k, v in parts.items()}
    need = {"train": 2, "val": 1 if d.val_size > 0 else 0, "test": 1}
    short = [k for k in need if n[k] < need[k]]
    if short:
        rows = ", ".join(f"{k} {n[k]}" for k in need)
        raise DataError(f"dataset={d.name} has {sum(n.values())} rows: too few for "
                        f"dataset.val_size={d.val_size:g} and dataset.test_size="
                        f"{d.test_size:g} (rows per split: {rows}; the {short[0]} split needs "
                        f"at least {need[short[0]]}); add rows, or change dataset.val_size / "
                        "dataset.test_size")


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


def fit_scaler(X: np.ndarray, y: np.ndarray | None,
               unscaled: np.ndarray | None = None) -> Scaler:
    """Standardisation statistics of the training split; zero-variance columns dropped.

    Columns marked ``unscaled`` (one-hot 0/1) keep their values (mean 0, scale 1): a
    coefficient reads as the category's effect, and a rare category is not blown up to large
    values that the penalty would then barely shrink.
    """
    std, absmax = _column_spread(X, unscaled)
    keep = np.flatnonzero(std > 1e-12 * np.maximum(1.0, absmax))
    if keep.size == 0:
        raise DataError("every feature column is constant on the training split")
    mean, scale = _column_means(X, keep, unscaled), std[keep]
    if unscaled is not None:
        hot = unscaled[keep]
        mean, scale = np.where(hot, 0.0, mean), np.where(hot, 1.0, scale)
    scaler = Scaler(keep=keep, mean=mean, scale=scale)
    if y is not None:
        Y = y.reshape(len(y), -1)
        sd = Y.std(axis=0)
        scaler.y_mean, scaler.y_scale = Y.mean(axis=0), np.where(sd > 0, sd, 1.0)
    return scaler


def _column_spread(X: Any, unscaled: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the standard deviation and the largest |x|, (k,) each. A sparse X (a file's
    wide one-hot block) computes them without densifying its 0/1 columns: for a 0/1 column
    with c ones in n rows they follow from c (its spread is 0 only for c = 0 or n)."""
    if not hasattr(X, "tocsr"):
        return X.std(axis=0), np.abs(X).max(axis=0)
    X = X.tocsc()
    hot = np.zeros(X.shape[1], bool) if unscaled is None else np.asarray(unscaled, bool)
    std, absmax = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    if (~hot).any():
        D = X[:, np.flatnonzero(~hot)].toarray()
        std[~hot], absmax[~hot] = D.std(axis=0), np.abs(D).max(axis=0)
    if hot.any():
        H = X[:, np.flatnonzero(hot)]
        share = np.asarray(H.sum(axis=0)).ravel() / X.shape[0]
        std[hot] = np.sqrt(np.maximum(share * (1.0 - share), 0.0))
        absmax[hot] = abs(H).max(axis=0).toarray().ravel()
    return std, absmax


def _column_means(X: Any, cols: np.ndarray, unscaled: np.ndarray | None) -> np.ndarray:
    """Means of the columns ``cols`` of X; of a sparse X, the numeric ones as the dense path
    computes them and the 0/1 ones (``unscaled``: the scaler leaves them at mean 0) as 0."""
    if not hasattr(X, "tocsr"):
        return X[:, cols].mean(axis=0)
    hot = np.zeros(X.shape[1], bool) if unscaled is None else np.asarray(unscaled, bool)
    mean = np.zeros(len(cols))
    num = ~hot[cols]
    if num.any():
        mean[num] = X.tocsc()[:, cols[num]].toarray().mean(axis=0)
    return mean


def decode_targets(data: Dataset, y: np.ndarray) -> np.ndarray:
    """Encoded targets or predictions back to source units/labels."""
    if data.task == "regression":
        s = data.scaler
        out = y.reshape(len(y), -1) * s.y_scale + s.y_mean
        return out[:, 0] if y.ndim == 1 else out
    if data.task == "multilabel" or data.classes is None:
        return y
    return data.classes[np.asarray(y, dtype=np.int64)]


def _digest(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> str:
    h = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(y).astype(str if y.dtype.kind == "O" else y.dtype).tobytes())
    _hash_weights(h, w)
    return h.hexdigest()[:16]


def _hash_weights(h: Any, w: np.ndarray | None) -> None:
    """Row weights into a digest (nothing without them: unweighted digests stay as they were)."""
    if w is not None:
        h.update(b"\0weights\0" + np.ascontiguousarray(w, dtype=np.float64).tobytes())


def _file(d: FileDatasetConfig):
    """A user file: its feature table, targets, names, categorical columns and the numeric
    columns as floats; missing values (unless ``dataset.missing`` fills them) and inf are
    errors here, before any split."""
    frame, y, inputs, targets, cats, w = sources.read_table(
        d.path, list(d.target), d.features, DataError, categorical_spec(d.categorical),
        d.weight_column)
    counts = tabular.missing_counts(frame)
    if counts and d.missing == "error":
        raise DataError(tabular.missing_message(counts, len(frame)))
    numeric = [c for c in inputs if c not in cats]
    X_num = tabular.numeric_block(frame, numeric)
    _check_finite(X_num, y, numeric, targets, nan_ok=True)
    return frame, y, inputs, targets, cats, X_num, w


def load(d: DatasetConfig, model: str, seed: int, class_weight: Any = None) -> Dataset:
    """Load, check, split and standardise ``d`` for ``model``; raise DataError when it can't fit.

    The targets pass the API's own check twice: whole (names what is wrong with the column)
    and as the training split ``pipeline.fit`` will get (a label that is constant there).
    A file's categories and fill values are learnt on the training split (``_encode``).
    ``class_weight`` (``model.class_weight``): its labels are checked against the classes.
    """
    if isinstance(d, FileDatasetConfig) and streams(d):  # chunk by chunk: X never whole
        from pipeline import data_streamed

        return data_streamed.load(d, model, seed, class_weight)
    frame, cats, w = None, None, None  # cats: a file's categorical columns (None: no encoding)
    if isinstance(d, SyntheticDatasetConfig):
        source = sources.synthetic(d.task, d.n, d.k, d.n_outputs, d.noise, d.seed)
    elif isinstance(d, FileDatasetConfig):
        frame, y, features, targets, cats, X, w = _file(d)
        if not cats and d.missing == "error":  # numbers only: used as they are
            cats = None
        source = (X, y, features, targets, None)
    else:
        source = sources.bundled(d.name)
    X, y, features, targets, names = source
    if cats is None:
        _check_finite(X, y, features, targets)
    T, classes = check_target(model, y, d.name, targets)
    task = infer_task(model, classes, targets) if d.task == "auto" else d.task
    if model not in MODELS_FOR_TASK[task]:
        what = (f" with {len(np.unique(y))} classes" if task in ("binary", "multiclass")
                else "")
        raise DataError(f"model={model} cannot learn dataset={d.name}: target "
                        f"{', '.join(map(repr, targets))} makes it a {task} task{what}; "
                        f"allowed models: {', '.join(MODELS_FOR_TASK[task])}")
    if task in ("binary", "multiclass"):
        assert classes is not None
        y_enc = T[:, 0].astype(np.int64)  # check_targets' codes: indices into classes
    else:
        classes = None
        y_enc = y.astype(np.float64)
    parts = _split(len(y), y_enc, classes is not None, d.val_size, d.test_size, seed)
    _check_splits(parts, d)
    weights = None if w is None else {s: w[idx] for s, idx in parts.items()}
    if weights is not None:
        _check_split_weights(weights, str(d.weight_column))
    tr = parts["train"]
    check_target(model, y_enc[tr], d.name, targets, " (its training split)")
    prep: tabular.Tabular | None = None
    raw: dict[str, np.ndarray] = {}
    facts: dict[str, float] = {}
    if cats is not None:
        assert isinstance(d, FileDatasetConfig) and frame is not None
        prep, raw, facts = _encode(frame, parts, d, cats)
        features, digest = prep.names, _frame_digest(frame, y, w)
    else:
        raw = {split: X[idx] for split, idx in parts.items()}
        digest = _digest(X, y, w)
    scaler = fit_scaler(raw["train"], y_enc[tr] if task == "regression" else None,
                        prep.onehot if prep is not None else None)
    Xs, ys = {}, {}
    for split, idx in parts.items():
        Xs[split] = scaler.transform(raw[split])
        yy = y_enc[idx]
        if task == "regression":
            yy = (yy.reshape(len(idx), -1) - scaler.y_mean) / scaler.y_scale
            yy = np.ascontiguousarray(yy[:, 0] if y_enc.ndim == 1 else yy)
        ys[split] = yy
    if classes is not None and (names is None or len(names) != len(classes)):
        names = [str(c) for c in classes]
    tables = ({s: frame.iloc[idx].reset_index(drop=True) for s, idx in parts.items()}
              if frame is not None and prep is not None else {})
    data = Dataset(name=d.name, task=task, feature_names=features, target_names=targets,
                   classes=classes, class_names=names or [], scaler=scaler, X=Xs, y=ys,
                   raw=raw, digest=digest, prep=prep, tables=tables, facts=facts,
                   weights=weights)
    class_weight_codes(data, class_weight)
    return data


def _check_split_weights(weights: dict[str, np.ndarray], column: str) -> None:
    """A split whose rows all weigh 0: nothing to fit (train) or no weighted score (val, test)."""
    for split, w in weights.items():
        if len(w) and not w.any():
            why = ("nothing to fit" if split == "train" else "its weighted scores are undefined")
            raise DataError(f"weight column {column!r} (dataset.weight_column) is 0 on every "
                            f"row of the {split} split ({len(w)} rows): {why}; give some of "
                            "its rows a positive weight, or change seed / the split sizes")


def class_weight_codes(data: Dataset, class_weight: Any) -> Any:
    """``model.class_weight`` as the core takes it for the encoded targets: None,
    ``"balanced"``, or a map class index -> weight (``data.y`` holds indices into
    ``data.classes``); a label the data do not have is a DataError naming their classes.
    Labels match by value or by text (``{1: 2.0}`` and ``{"1": 2.0}`` name the class 1)."""
    if class_weight is None or isinstance(class_weight, str):
        return class_weight
    if data.classes is None:
        raise DataError(f"model.class_weight needs classes; dataset={data.name} is a "
                        f"{data.task} task: weigh its rows with dataset.weight_column")
    labels = data.classes.tolist()
    out: dict[int, float] = {}
    for key, value in dict(class_weight).items():
        hits = [i for i, c in enumerate(labels) if _label(c) == _label(key)]
        if not hits:
            shown = ", ".join(map(str, labels[:20])) + (" ..." if len(labels) > 20 else "")
            raise DataError(f"model.class_weight names the class {key!r}, which target "
                            f"{', '.join(map(repr, data.target_names))} of dataset={data.name}"
                            f" does not have; its classes: {shown}")
        if hits[0] in out:
            raise DataError(f"model.class_weight names the class {labels[hits[0]]!r} twice "
                            f"(as {key!r} too); give each class one weight")
        out[hits[0]] = float(value)
    return out


def _label(value: Any) -> str:
    """A class label as text, numbers by value (1, 1.0 and "1" are one label)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _encode(frame: Any, parts: dict[str, np.ndarray], d: FileDatasetConfig,
            cats: list[str]) -> tuple[tabular.Tabular, dict[str, np.ndarray], dict[str, float]]:
    """Fill values and categories learnt on the training rows, applied to every split; the
    ``data/*`` facts: one-hot columns, unseen categories (val, test, total), filled cells."""
    prep = tabular.fit(frame.iloc[parts["train"]], cats, d.missing, d.max_onehot, DataError,
                       d.sparse)
    raw: dict[str, np.ndarray] = {}
    facts: dict[str, float] = {"data/onehot_columns": float(prep.onehot.sum())}
    filled = 0
    for split, idx in parts.items():
        enc = prep.transform(frame.iloc[idx])
        raw[split], filled = enc.X, filled + enc.filled
        if split != "train":
            facts[f"data/{split}_unseen_categories"] = float(sum(enc.unseen.values()))
    facts["data/unseen_categories"] = facts["data/val_unseen_categories"] + facts[
        "data/test_unseen_categories"]
    facts["data/filled_values"] = float(filled)
    return prep, raw, facts


def _frame_digest(frame: Any, y: np.ndarray, w: np.ndarray | None = None) -> str:
    """sha256 of a table (its values and column names), the targets and the row weights."""
    import pandas as pd

    h = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    h.update("\0".join(map(str, frame.columns)).encode())
    h.update(np.ascontiguousarray(y).astype(str if y.dtype.kind == "O" else y.dtype).tobytes())
    _hash_weights(h, w)
    return h.hexdigest()[:16]
