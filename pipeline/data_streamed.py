"""A user file streamed chunk by chunk: the app's ``dataset.streaming`` (X never loaded whole).

``load`` is what ``pipeline.data.load`` hands a streamed file dataset to. It returns a
:class:`StreamedDataset`: a ``data.Dataset`` whose ``X[split]`` are chunked sources
(:class:`SplitSource`, the split's rows of the file, standardised as they are read) and whose
``y[split]`` are the encoded targets, held in memory like the predictions (O(n m), not O(n k)).

- Splits: row ``i`` of the file goes to test, validation or training by a hash of ``i`` and
  ``seed`` (splitmix64 to a uniform u in [0, 1): test if u < test_size, validation if
  u < test_size + val_size), so a row's split depends on neither the chunking nor the other
  rows. Not stratified (an in-memory run's split is), and the split sizes are binomial
  around the fractions, not rounded counts.
- One streamed pass over the whole file checks X (NaN/inf named by column and row), collects
  the targets of each split and the training rows' exact column statistics (Chan's update in
  chunk order, as ``pipeline.streamed.column_stats``) and their absolute maxima (the
  zero-variance rule of ``data.fit_scaler``), and hashes the data (``dataset.digest`` and the
  training input's digest, the same sha256 as an in-memory run of the same rows).
- ``SplitSource`` cuts a split's rows into uniform chunks of ``chunk_rows`` split rows (the
  chunking of ``ArrayObjective(..., chunk_rows=chunk_rows)`` on the split's scaled rows in
  memory, whose bits a streamed fit then gives); a chunk reads the file's rows from its first
  to its last row and keeps those of its split.

A file's ``dataset.weight_column`` (Parquet only) is read as the source's last target column,
checked by the in-memory rules and held per split (``weights``), like the targets; the fit
takes it through ``pipeline.streamed_fit``. The DVC files: ``pipeline.stage_streamed``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import data as datamod
from pipeline.chunked import ChunkedSource, SourceError, uniform_bounds
from pipeline.config_dataset import FileDatasetConfig, stream_only
from pipeline.streamed import chan_combine, prefetched

SPLITS = ("train", "val", "test")
CODES = {"train": 0, "val": 1, "test": 2}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# ----------------------------------------------------------------------------- the split rule
def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def split_codes(lo: int, hi: int, seed: int, val: float, test: float) -> np.ndarray:
    """The split of rows ``[lo, hi)`` of a file (0 train, 1 val, 2 test), by row index and seed
    only: the same whatever the chunking."""
    with np.errstate(over="ignore"):
        key = np.arange(lo, hi, dtype=np.uint64) + _splitmix(
            np.array([seed], dtype=np.uint64) + _GOLDEN)[0]
        u = (_splitmix(key * _GOLDEN) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return np.where(u < test, 2, np.where(u < test + val, 1, 0)).astype(np.int8)


# ----------------------------------------------------------------------------- the source
def open_file(d: FileDatasetConfig) -> ChunkedSource:
    """The chunked source of a file dataset: Parquet (file or folder) with ``dataset.target``
    columns, else X in ``.npy`` / shards / zarr with ``dataset.target_path``."""
    from pipeline.chunked import ParquetSource, open_source

    try:
        if stream_only(str(d.path)):
            src = open_source(d.path, d.target_path, chunk_rows=d.chunk_rows)
            if d.target and len(d.target) == len(src.target_names):
                src.target_names = [str(t) for t in d.target]
            return src
        weight = [] if d.weight_column is None else [str(d.weight_column)]  # last column
        return ParquetSource(d.path, [str(t) for t in d.target] + weight, features=d.features,
                             chunk_rows=d.chunk_rows)
    except SourceError as err:
        raise datamod.DataError(f"dataset.path={d.path!r}: {err}") from None


@dataclass
class _Rule:
    """Which split a row is in, and what a chunk of the split's rows does to them."""

    seed: int
    val: float
    test: float
    split: int
    keep: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    task: str
    classes: np.ndarray | None
    y_mean: np.ndarray
    y_scale: np.ndarray
    weighted: bool = False  # the file's targets end with the weight column: dropped here


def _no_weights(rule: _Rule, y: np.ndarray) -> np.ndarray:
    """The targets without the weight column (a file's ``dataset.weight_column``)."""
    if not rule.weighted:
        return y
    return y[:, 0] if y.shape[1] == 2 else y[:, :-1]


def _select(rule: _Rule, lo: int, hi: int) -> np.ndarray:
    return split_codes(lo, hi, rule.seed, rule.val, rule.test) == rule.split


def _targets(rule: _Rule, y: np.ndarray) -> np.ndarray:
    """Raw targets as the core takes them: class indices, 0/1 floats, standardised reals."""
    y = np.asarray(y)
    if rule.task in ("binary", "multiclass"):
        assert rule.classes is not None
        return np.searchsorted(rule.classes, y.reshape(len(y))).astype(np.int64)
    if rule.task == "multilabel":
        return y.astype(np.float64)
    Y = (y.reshape(len(y), -1).astype(np.float64) - rule.y_mean) / rule.y_scale
    return np.ascontiguousarray(Y[:, 0] if y.ndim == 1 else Y)


def read_split(loader, rule: _Rule, lo: int, hi: int, out: np.ndarray | None = None):
    """The split's rows among the file's rows ``[lo, hi)``: scaled X and core-ready targets
    (``out`` is not used: the selection is a new array anyway)."""
    X_c, y_c = loader()
    take = _select(rule, lo, hi)
    X = np.asarray(X_c, dtype=np.float64)[take]
    return (np.ascontiguousarray((X[:, rule.keep] - rule.mean) / rule.scale),
            _targets(rule, _no_weights(rule, np.asarray(y_c)[take])))


def read_split_targets(loader, rule: _Rule, lo: int, hi: int) -> np.ndarray:
    return _targets(rule, _no_weights(rule, np.asarray(loader())[_select(rule, lo, hi)]))


class SplitSource(ChunkedSource):
    """The rows of one split of a file, standardised as read, in uniform chunks of
    ``chunk_rows`` split rows (loaders picklable: the file's loader, row range and rule).

    ``counts[c]``: the split's rows in chunk ``c`` of ``base`` (from the streamed pass).
    """

    kind = "split"

    def __init__(self, base: ChunkedSource, rule: _Rule, counts: np.ndarray,
                 feature_names: list[str], target_names: list[str], chunk_rows: int):
        self.base, self.rule = base, rule
        self._cum = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n = int(self._cum[-1])
        super().__init__(base.path, n, len(rule.keep), np.dtype(np.float64), feature_names,
                         target_names, chunk_rows, chunk_rows)
        self.bounds = uniform_bounds(n, self.chunk_rows) if n else [(0, 0)]

    def file_row(self, v: int) -> int:
        """Row of the file holding the split's row ``v`` (0 <= v < n_samples)."""
        c = int(np.searchsorted(self._cum, v, side="right")) - 1
        lo, hi = self.base.bounds[c]
        return lo + int(np.flatnonzero(_select(self.rule, lo, hi))[v - self._cum[c]])

    def file_range(self, lo: int, hi: int) -> tuple[int, int]:
        if hi <= lo:
            return 0, 0
        return self.file_row(lo), self.file_row(hi - 1) + 1

    def _loader(self, lo: int, hi: int):
        a, b = self.file_range(lo, hi)
        read = getattr(self.base, "_mapped_loader", self.base._loader)  # .npy: a mapped view
        return functools.partial(read_split, read(a, b), self.rule, a, b)

    def _target_loader(self, lo: int, hi: int):
        a, b = self.file_range(lo, hi)
        return functools.partial(read_split_targets, self.base._target_loader(a, b), self.rule,
                                 a, b)


# ----------------------------------------------------------------------------- the dataset
@dataclass
class StreamedDataset(datamod.Dataset):
    """A ``data.Dataset`` whose ``X[split]`` are chunked sources and ``raw`` is empty.

    ``example``: the first test rows as the file has them (the logged model's input
    example); ``stream``: the ``data.*`` params of the run (streamed, chunking);
    ``train_digest``: sha256 of the training rows and targets (the run's dataset input).
    """

    example: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    stream: dict[str, str] = field(default_factory=dict)
    train_digest: str = ""
    streamed = True

    def input_example(self, n: int = 5) -> Any:
        import pandas as pd

        return pd.DataFrame(self.example[:n], columns=self.feature_names)


def _bad_values(X: np.ndarray, names: list[str], lo: int, path: str) -> datamod.DataError:
    j = int(np.flatnonzero(~np.isfinite(X).all(axis=0))[0])
    rows = np.flatnonzero(~np.isfinite(X[:, j])) + lo
    kind = "NaN" if np.isnan(X[:, j]).any() else "inf"
    return datamod.DataError(
        f"column {names[j]!r} of {path} contains {kind} (rows {rows[:5].tolist()}"
        f"{' ...' if rows.size > 5 else ''}, found while streaming); drop or fill them in the "
        "file first (dataset.missing does not stream)")


def _scan(base: ChunkedSource, seed: int, val: float, test: float):
    """The one pass over the file: per split its targets and rows per chunk; the training
    rows' count, mean, M2 and absolute maxima; digests of the file and of the training rows."""
    k = base.n_features
    ys: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    counts = np.zeros((len(base.bounds), 3), dtype=np.int64)
    n, mean, m2, absmax = 0, np.zeros(k), np.zeros(k), np.zeros(k)
    h_all, h_train = hashlib.sha256(), hashlib.sha256()
    head: list[np.ndarray] = []
    for c, ((lo, hi), (X_c, y_c)) in enumerate(zip(base.bounds, prefetched(base.loaders()),
                                                   strict=True)):
        X = np.ascontiguousarray(X_c, dtype=np.float64)
        if X.size and not np.isfinite(X).all():
            raise _bad_values(X, base.feature_names, lo, base.path)
        code = split_codes(lo, hi, seed, val, test)
        y = np.asarray(y_c)
        for s, i in CODES.items():
            take = code == i
            counts[c, i] = int(take.sum())
            ys[s].append(y[take])
        X_t = np.ascontiguousarray(X[code == 0])
        h_all.update(X.tobytes())
        h_train.update(X_t.tobytes())
        if sum(len(r) for r in head) < 5:
            head.append(X[code == 2][:5])
        if X_t.shape[0]:
            mean_b = X_t.mean(axis=0)
            m2_b = np.square(X_t - mean_b).sum(axis=0)
            n, mean, m2 = chan_combine(n, mean, m2, X_t.shape[0], mean_b, m2_b)
            absmax = np.maximum(absmax, np.abs(X_t).max(axis=0))
    example = np.concatenate(head)[:5] if head else np.zeros((0, k))
    return ({s: np.concatenate(v) for s, v in ys.items()}, counts, (n, mean, m2, absmax),
            h_all, h_train, example)


def load(d: FileDatasetConfig, model: str, seed: int, class_weight: Any = None) -> Any:
    """Check, split and standardise a file chunk by chunk (``data.load``'s rules where they
    apply); raise ``DataError`` when it cannot fit ``model``."""
    base = open_file(d)
    try:
        ys, counts, (n_tr, mean, m2, absmax), h_all, h_train, example = _scan(
            base, seed, d.val_size, d.test_size)
    except SourceError as err:
        raise datamod.DataError(f"dataset.path={d.path!r}: {err}") from None
    targets = list(base.target_names)
    weights = None
    if d.weight_column is not None:  # the source's last target column
        targets = targets[:-1]
        import pandas as pd

        from pipeline.sources import row_weights

        w_all = row_weights(pd.Series(np.concatenate([ys[s][:, -1] for s in SPLITS]),
                                      dtype=np.float64), str(d.weight_column), datamod.DataError)
        cuts = np.cumsum([len(ys[s]) for s in SPLITS])[:-1]
        weights = dict(zip(SPLITS, np.split(w_all, cuts), strict=True))
        ys = {s: (v[:, 0] if v.shape[1] == 2 else v[:, :-1]) for s, v in ys.items()}
    y_all = np.concatenate([ys[s] for s in SPLITS])
    datamod._check_finite(np.zeros((len(y_all), 0)), y_all, [], targets)
    T, classes = datamod.check_target(model, y_all, d.name, targets)
    task = datamod.infer_task(model, classes, targets) if d.task == "auto" else d.task
    if model not in datamod.MODELS_FOR_TASK[task]:
        raise datamod.DataError(f"model={model} cannot learn dataset={d.name}: target "
                                f"{', '.join(map(repr, targets))} makes it a {task} task; "
                                f"allowed models: {', '.join(datamod.MODELS_FOR_TASK[task])}")
    if task not in ("binary", "multiclass"):
        classes = None
    sizes = {s: len(ys[s]) for s in SPLITS}
    datamod._check_splits({s: ys[s] for s in SPLITS}, d)
    if weights is not None:
        datamod._check_split_weights(weights, str(d.weight_column))
    std = np.sqrt(m2 / max(n_tr, 1))
    keep = np.flatnonzero(std > 1e-12 * np.maximum(1.0, absmax))
    if keep.size == 0:
        raise datamod.DataError("every feature column is constant on the training split")
    scaler = datamod.Scaler(keep=keep, mean=mean[keep], scale=std[keep])
    if task == "regression":
        Y = ys["train"].reshape(sizes["train"], -1).astype(np.float64)
        sd = Y.std(axis=0)
        scaler.y_mean, scaler.y_scale = Y.mean(axis=0), np.where(sd > 0, sd, 1.0)
    rule = functools.partial(_Rule, seed, d.val_size, d.test_size, keep=keep,
                             mean=scaler.mean, scale=scaler.scale, task=task, classes=classes,
                             y_mean=scaler.y_mean, y_scale=scaler.y_scale,
                             weighted=weights is not None)
    y_core = {s: _targets(rule(split=0), ys[s]) for s in SPLITS}
    datamod.check_target(model, y_core["train"], d.name, targets, " (its training split)")
    names = [base.feature_names[j] for j in keep]
    X: dict[str, Any] = {s: SplitSource(base, rule(split=CODES[s]), counts[:, CODES[s]], names,
                                        targets, base.chunk_rows) for s in SPLITS}
    h_all.update(np.ascontiguousarray(y_all).astype(
        str if y_all.dtype.kind == "O" else y_all.dtype).tobytes())
    if weights is not None:
        datamod._hash_weights(h_all, np.concatenate([weights[s] for s in SPLITS]))
    class_names = [str(c) for c in classes] if classes is not None else []
    data = StreamedDataset(
        name=d.name, task=task, feature_names=list(base.feature_names), target_names=targets,
        classes=classes, class_names=class_names, scaler=scaler, X=X, y=y_core, raw={},
        digest=h_all.hexdigest()[:16], example=example,
        stream=stream_params(base.kind, base.chunk_rows, X["train"]), weights=weights)
    y_seen = (datamod.decode_targets(data, y_core["train"]) if task == "regression"
              else y_core["train"])  # what an in-memory run's training input hashes
    h_train.update(np.ascontiguousarray(y_seen).tobytes())
    if weights is not None:  # as an in-memory run's training input
        h_train.update(b"\0weights\0" + weights["train"].tobytes())
    data.train_digest = h_train.hexdigest()[:16]
    datamod.class_weight_codes(data, class_weight)
    return data


def stream_params(kind: str, chunk_rows: int, train: ChunkedSource) -> dict[str, str]:
    """The run's ``data.*`` params of a streamed run: it streamed, from what, in what chunks."""
    return {"data.streamed": "true", "data.source_kind": kind,
            "data.chunk_rows": str(chunk_rows), "data.n_chunks": str(len(train.bounds))}


# ----------------------------------------------------------------------------- app hooks
def is_streamed(data: Any) -> bool:
    return bool(getattr(data, "streamed", False))


def run_params(data: Any) -> dict[str, str]:
    """``data.streamed`` (false for an in-memory run) and a streamed run's chunking."""
    return dict(getattr(data, "stream", None) or {"data.streamed": "false"})


def head(X: Any, n: int) -> np.ndarray:
    """The first ``n`` rows of an array or of a chunked source's X."""
    if isinstance(X, ChunkedSource):
        return X.take(np.arange(min(n, X.n_samples)))[0]
    return X[:n]


def training_input(label: str, data: Any, d: Any) -> dict[str, Any]:
    """What ``Tracker.log_dataset`` records of a streamed training split: names, shapes and
    the digest (the features as zero-stride columns: MLflow keeps only schema and shape);
    ``d`` is the dataset config (its path is the source)."""
    path = getattr(d, "path", None)
    source = str(Path(path).resolve()) if path else None
    n = len(data.y["train"])
    y = datamod.decode_targets(data, data.y["train"]) if data.task == "regression" else \
        data.y["train"]
    names = data.feature_names
    features: Any = {c: np.broadcast_to(np.zeros(1), (n,)) for c in names}
    if len(set(names)) != len(names) or len(names) > 500:
        features = np.broadcast_to(np.zeros((1, 1)), (n, len(names)))
    Y = y.reshape(n, -1)
    targets: Any = y
    if len(set(data.target_names)) == len(data.target_names) == Y.shape[1]:
        targets = {t: Y[:, j] for j, t in enumerate(data.target_names)}
    return {"name": label, "digest": data.train_digest, "features": features,
            "targets": targets, "source": source}
