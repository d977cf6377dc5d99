"""The objective over a :class:`~pipeline.chunked.ChunkedSource`: chunks streamed from disk.

:class:`StreamedObjective` implements the seam's two methods (``map_chunks``, ``take``) by
reading the chunks in a background thread up to ``prefetch`` chunks ahead of the kernel (a
bounded queue), so reading overlaps compute and the process holds ``prefetch + 1`` chunk
buffers, reused every pass (one in the kernel, the others read ahead), besides the
solver's own arrays: (k, m) weights, a (k+1)^2 Gram or Hessian, and the row samples some
solvers draw (``newton``: n / 20 rows from 200 000 rows on while they hold at most
``SAMPLE_BYTES`` of X, above that none: its sampled Hessian, O((k m)^2), is summed chunk by
chunk at each step, one pass each; ``prox_newton``: at most 32 768;
``lbfgs``, ``split_lbfgs``, ``gd``, ``agd``, ``closed_form``, ``cd`` draw at most 50 000).
With the same chunking its results are bit-identical to
``ArrayObjective(model, X, T, n_classes, chunk_rows=source.chunk_rows)`` on the same data
(but for newton's accumulated Hessian sample: the same optimum, rounded otherwise).

The targets are checked in one streamed pass over the target columns only (the rules of
:func:`pipeline.validation.check_targets`, with row numbers counted over the whole source) and
encoded per chunk with :func:`pipeline.objectives.encode_targets`.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

import kernels

from .chunked import ChunkedSource, SourceError
from .objectives import Objective, encode_targets
from .validation import check_targets

PREFETCH = 2  # chunks read ahead of the kernel
# newton's Hessian sample (n / 20 rows) is taken into memory up to this many bytes of X, and
# above it accumulated chunk by chunk at each Newton step (O((k m)^2), one pass a step)
SAMPLE_BYTES = 32 * 2**20
_CLASSIFIERS = ("logistic", "softmax", "ovr")


def chunk_X(X_c: np.ndarray, dtype: str, lo: int = 0, where: str = "X",
            check: bool = True) -> np.ndarray:
    """A chunk's X as the kernels take it: C-contiguous of ``dtype``, checked finite unless
    ``check`` is False (``lo``, its first row, numbers the rows an error names)."""
    X = np.ascontiguousarray(X_c, dtype=dtype)
    if check and X.size and not kernels.all_finite(X):
        rows = np.flatnonzero(~np.isfinite(X).all(axis=1)) + lo
        raise SourceError(f"{where} has NaN/inf value(s) in rows {rows[:10].tolist()}"
                          f"{' ...' if rows.size > 10 else ''}; impute or drop them first")
    return X


def encode_chunk(model: str, classes: np.ndarray | None, dtype: str, X_c: np.ndarray,
                 y_c: np.ndarray, lo: int = 0, where: str = "X",
                 check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One chunk as the kernels take it: X (:func:`chunk_X`) and the encoded targets T
    (rows, m) float64, as ``check_targets`` + ``encode_targets`` give them on the whole
    array."""
    X = chunk_X(X_c, dtype, lo, where, check)
    y = np.asarray(y_c)
    if model in _CLASSIFIERS:
        assert classes is not None
        codes = np.searchsorted(classes, y.reshape(y.shape[0]))
        T = codes.astype(np.float64).reshape(-1, 1)
        return X, encode_targets(model, T, len(classes))
    return X, np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=np.float64)


def load_encoded(loader: Callable[..., tuple[np.ndarray, np.ndarray]], model: str,
                 classes: np.ndarray | None, dtype: str, lo: int, where: str,
                 check: bool = True, out: np.ndarray | None = None):
    """``encode_chunk`` of ``loader(out=out)``: what a worker calls to hold a kernel-ready
    chunk."""
    return encode_chunk(model, classes, dtype, *loader(out=out), lo=lo, where=where,
                        check=check)


def _waiting(stop: threading.Event, action: Callable[[], Any], busy: type[Exception]):
    """``action()`` retried while it raises ``busy`` (a full or empty queue) until ``stop``;
    (True, its result), or (False, None) once stopped."""
    while not stop.is_set():
        try:
            return True, action()
        except busy:
            continue
    return False, None


def prefetched(loaders: Sequence[Callable[..., Any]], depth: int = PREFETCH,
               buffers: Sequence[np.ndarray] | None = None) -> Generator:
    """``loader()`` for each loader in order, read by a background thread at most ``depth``
    results ahead of the consumer. An error in a loader is raised in the consumer; a consumer
    that stops early (or whose ``with closing(...)`` ends) stops the thread.

    ``buffers``: each loader is called as ``loader(out=buf)`` with a buffer not in use; a
    buffer is in use from its read until the consumer asks for the next item, so results must
    not be kept beyond that. Then the buffers bound the chunks alive, and no chunk costs fresh
    pages.
    """
    box: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
    free: queue.Queue = queue.Queue()
    for buf in buffers or ():
        free.put(buf)
    stop = threading.Event()
    done = object()

    def send(entry: tuple) -> bool:
        return _waiting(stop, lambda: box.put(entry, timeout=0.1), queue.Full)[0]

    def read() -> None:
        try:
            for loader in loaders:
                buf = None
                if buffers:
                    got, buf = _waiting(stop, lambda: free.get(timeout=0.1), queue.Empty)
                    if not got:
                        return
                if not send((True, loader() if buf is None else loader(out=buf), buf)):
                    return
        except BaseException as err:  # handed to the consumer, who raises it
            send((False, err, None))
            return
        send((True, done, None))

    thread = threading.Thread(target=read, name="chunk-reader", daemon=True)
    thread.start()
    try:
        while True:
            ok, item, buf = box.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
            del item  # drop the consumer's reference before waiting for the next chunk
            if buf is not None:
                free.put(buf)
    finally:
        stop.set()
        thread.join()


# --------------------------------------------------------------------------- the targets
def _missing_rows(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "O":
        import pandas as pd  # lazy: only object (string) labels need it

        return np.flatnonzero(pd.isna(y).reshape(len(y), -1).any(axis=1))
    if y.dtype.kind in "fc":
        return np.flatnonzero(~np.isfinite(y).reshape(len(y), -1).all(axis=1))
    return np.empty(0, dtype=np.intp)


def _check_chunk(model: str, y: np.ndarray, lo: int) -> np.ndarray:
    """Per-chunk target rules (row numbers counted over the source); returns the values to
    collect: the chunk's classes, a multilabel chunk's column sums, nothing for linear."""
    bad = _missing_rows(y)
    if bad.size:
        raise SourceError(f"the target has {bad.size} missing or non-finite value(s) in rows "
                          f"{(bad[:10] + lo).tolist()}; drop or fill them first")
    if model == "linear":
        check_targets(model, y, y.shape[0])  # numeric, (n,) or (n, m)
        return np.empty(0)
    if model == "multilabel":
        if y.ndim != 2 or y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
            raise SourceError(f"multilabel needs targets of shape (n, m) with entries 0 or 1; "
                              f"got rows of shape {y.shape[1:]}, dtype {y.dtype}")
        return y.sum(axis=0, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise SourceError(f"{model} needs one target column holding class labels; got rows "
                          f"of shape {y.shape[1:]} (for several 0/1 labels use "
                          "model=multilabel)")
    try:
        return np.unique(y)
    except TypeError:
        raise TypeError(f"the target mixes label types ({sorted({type(v).__name__ for v in y})})"
                        "; use one type for every label") from None


def scan_targets(model: str, source: ChunkedSource) -> np.ndarray | None:
    """One streamed pass over the targets: checked, and the class labels (sorted; None for
    linear; ``arange(m)`` for multilabel) as :func:`~pipeline.validation.check_targets`
    returns them for the whole array."""
    classes: np.ndarray | None = None
    ones = None
    for (lo, _), y in zip(source.bounds, prefetched(source.target_loaders()), strict=True):
        part = _check_chunk(model, np.asarray(y), lo)
        if model == "multilabel":
            ones = part if ones is None else ones + part
        elif model in _CLASSIFIERS:
            try:
                classes = part if classes is None else np.union1d(classes, part)
            except TypeError:
                raise TypeError("the target mixes label types across chunks; use one type for "
                                "every label") from None
    if model == "linear":
        return None
    if model == "multilabel":
        assert ones is not None
        for c in np.flatnonzero((ones == 0) | (ones == source.n_samples)):
            raise SourceError(f"label column {source.target_names[c]!r} of the target is "
                              f"constant ({int(ones[c] > 0)} in every row); each label needs "
                              "both 0 and 1: drop that column")
        return np.arange(ones.size)
    assert classes is not None
    return check_targets(model, classes, classes.size)[1]  # class-count and label rules


# --------------------------------------------------------------------------- the objective
def n_outputs_of(model: str, source: ChunkedSource, classes: np.ndarray | None) -> int:
    """Width m of W for ``model`` on ``source`` (as :func:`pipeline.objectives.n_outputs`)."""
    if model in ("softmax", "ovr"):
        assert classes is not None
        return len(classes)
    return 1 if model == "logistic" else len(source.target_names)


class StreamedObjective(Objective):
    """Mean data loss of ``model`` over the chunks of ``source``, read from disk every pass.

    Parameters
    ----------
    model : str
    source : ChunkedSource
    classes : ndarray, optional
        The class labels (:func:`scan_targets` finds and checks them when not given).
    dtype : float64 or float32
        Each chunk's X is converted to it as read (W, b and all sums stay float64).
    prefetch : int
        Chunks read ahead of the kernel (memory: at most ``prefetch + 2`` chunks).
    """

    def __init__(self, model: str, source: ChunkedSource, classes: np.ndarray | None = None,
                 *, dtype: str = "float64", prefetch: int = PREFETCH,
                 scanned: bool = False):
        if classes is None and not scanned:
            classes = scan_targets(model, source)
        self.source, self.classes, self.dtype = source, classes, dtype
        super().__init__(model, source.n_samples, source.n_features,
                         n_outputs_of(model, source, classes))
        self.prefetch = prefetch
        self.bounds = source.bounds
        self.max_sample_bytes = SAMPLE_BYTES
        # The first pass checks every chunk for NaN/inf; later passes trust it (the check
        # cost as much as the kernel).
        # Its own passes read memory-mapped .npy chunks (no copy); encoded_loaders() copy.
        self._loaders = self.encoded_loaders(mapped=True)
        self._trusted = self.encoded_loaders(False, mapped=True)
        self._checked = False
        self._buffers: list[np.ndarray] = []

    def encoded_loaders(self, check: bool = True,
                        mapped: bool = False) -> list[Callable[..., tuple]]:
        """One picklable callable per chunk returning its kernel-ready ``(X_c, T_c)`` (X
        checked finite unless ``check`` is False; ``mapped``: a view of a memory map where
        the source allows it, :meth:`~pipeline.chunked.ChunkedSource.loaders`)."""
        where = f"X ({self.source.path})"
        return [functools.partial(load_encoded, loader, self.model, self.classes, self.dtype,
                                  lo, where, check)
                for loader, (lo, _) in zip(self.source.loaders(mapped), self.bounds,
                                           strict=True)]

    def map_chunks(self, op, *args) -> list:
        # closing: a kernel error stops the reader now, not when the traceback is freed
        loaders = self._trusted if self._checked else self._loaders
        parts = []
        with contextlib.closing(prefetched(loaders, self.prefetch, self.buffers())) as chunks:
            for chunk in chunks:
                parts.append(op(*chunk, *args))
                del chunk  # a mapped chunk is unmapped before the reader maps the next one
        self._checked = True
        return parts

    def buffers(self) -> list[np.ndarray]:
        """``prefetch + 1`` chunk buffers in the source's dtype, made once and reused every
        pass: the chunks of X alive at any time (one in the kernel, the rest read ahead)."""
        if not self._buffers:
            shape = (min(self.source.chunk_rows, max(self.n_samples, 1)), self.n_features)
            self._buffers = [np.empty(shape, dtype=self.source.dtype)
                             for _ in range(self.prefetch + 1)]
        return self._buffers

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        X, y = self.source.take(np.asarray(rows))
        return encode_chunk(self.model, self.classes, self.dtype, X, y,
                            where=f"X ({self.source.path}, sampled rows)")

    def decision(self, W, b) -> np.ndarray:
        """Logits Z = X W + b (n, m), chunk by chunk (holds Z, not X). One pass."""
        self.counter.rows += self.n_samples
        return np.concatenate(self.map_chunks(_decision, W, b))


def _decision(X, T, W, b) -> np.ndarray:
    return kernels.decision_function(X, W, b)


def source_decision(source: ChunkedSource, W, b, dtype: str = "float64") -> np.ndarray:
    """Logits ``X W + b`` (n, m) of every row of ``source``, chunk by chunk (for predict)."""
    if source.n_features != W.shape[0]:
        raise ValueError(f"the source has {source.n_features} features but the model was fit "
                         f"on {W.shape[0]}")
    where = f"X ({source.path})"
    return np.concatenate([
        kernels.decision_function(chunk_X(X_c, dtype, lo, where), W, b)
        for (lo, _), (X_c, _) in zip(source.bounds, prefetched(source.loaders()), strict=True)])


def column_stats(source: ChunkedSource, dtype: str = "float64",
                 prefetch: int = PREFETCH) -> tuple[np.ndarray, np.ndarray]:
    """Exact column means and standard deviations (population, ddof 0) in one streamed pass.

    Each chunk's mean and sum of squared deviations are combined in chunk order by Chan et
    al.'s parallel update (stable: no sum of squares of raw values), so a cluster that combines
    the same per-chunk parts in the same order gets the same bits.
    """
    n, mean, m2 = 0, np.zeros(source.n_features), np.zeros(source.n_features)
    for X_c, _ in prefetched(source.loaders(), prefetch):
        X = np.asarray(X_c, dtype=dtype)
        n_b = X.shape[0]
        if not n_b:
            continue
        mean_b = X.mean(axis=0, dtype=np.float64)
        m2_b = np.square(X - mean_b).sum(axis=0, dtype=np.float64)
        n, mean, m2 = chan_combine(n, mean, m2, n_b, mean_b, m2_b)
    return mean, np.sqrt(m2 / max(n, 1))


def chan_combine(n_a: int, mean_a, m2_a, n_b: int, mean_b, m2_b):
    """(n, mean, M2) of two row sets from theirs (Chan, Golub and LeVeque's update)."""
    n = n_a + n_b
    if n_a == 0:
        return n_b, np.array(mean_b, dtype=np.float64), np.array(m2_b, dtype=np.float64)
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta ** 2 * (n_a * n_b / n)


# --------------------------------------------------------------------------- for pipeline.fit
def streamed_problem(source: ChunkedSource, y, model: str, solver: str, dtype: str,
                     backend: str, sample_weight=None,
                     class_weight=None) -> tuple[StreamedObjective, np.ndarray | None]:
    """The objective ``pipeline.fit`` minimises for a source, and the class labels; raises
    before any pass for what a source cannot do (targets given apart, a GPU, sgd). Weights
    (``pipeline.streamed_fit``): the rows' weights held in memory like the targets."""
    from .solvers import SOLVERS

    if y is not None:
        raise TypeError("y must be None when X is a ChunkedSource: the targets come from the "
                        "source (its target=...)")
    if backend != "cpu":
        raise ValueError(f"backend={backend!r} does not take a ChunkedSource (yet): a source "
                         "streams on backend='cpu'; load the data into an array for "
                         f"backend={backend!r}")
    if solver == "sgd":
        works = [s for s in SOLVERS if s not in NEEDS_MEMORY]
        raise ValueError("solver='sgd' draws shuffled mini-batches from all rows, so it needs "
                         "X in memory; for a ChunkedSource use one of: auto, "
                         + ", ".join(works))
    classes = scan_targets(model, source)
    if sample_weight is not None or class_weight is not None:
        from .streamed_fit import weighted_objective

        return weighted_objective(model, source, classes, sample_weight, class_weight,
                                  dtype), classes
    return StreamedObjective(model, source, classes, dtype=dtype, scanned=True), classes


NEEDS_MEMORY = ("sgd",)  # solvers that read all rows in random order
