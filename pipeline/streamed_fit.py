"""``pipeline.fit`` for a chunked source with row weights: what the app's streamed runs use.

``pipeline.fit`` refuses ``sample_weight`` with a chunked source; here the weights s (n,),
held in memory like the targets, join each chunk's encoded targets as their last column (the
kernels' ``weighted`` form, as ``encode_targets`` gives an in-memory objective), so a weighted
streamed fit gives the bits of ``ArrayObjective(..., sample_weight=s, chunk_rows=...)``.
``class_weight`` multiplies them (``pipeline.weights.row_weights``, the API's rules) after one
pass over the targets alone.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from pipeline.chunked import ChunkedSource
from pipeline.streamed import StreamedObjective, scan_targets


def _with_weights(load, w: np.ndarray, out: np.ndarray | None = None):
    X, T = load(out=out)
    return X, np.ascontiguousarray(np.column_stack([T, w]), dtype=np.float64)


class WeightedStreamedObjective(StreamedObjective):
    """A :class:`~pipeline.streamed.StreamedObjective` whose rows weigh ``s`` (n,)."""

    def __init__(self, model: str, source: ChunkedSource, classes: np.ndarray | None,
                 s: np.ndarray, *, dtype: str = "float64"):
        self._s = np.ascontiguousarray(s, dtype=np.float64)
        super().__init__(model, source, classes, dtype=dtype, scanned=True)
        self.weighted = True
        self.weight_total = math.fsum(self._s)  # as ArrayObjective: exactly rounded

    def encoded_loaders(self, check: bool = True, mapped: bool = False) -> list:
        plain = super().encoded_loaders(check, mapped=mapped)
        return [functools.partial(_with_weights, load, self._s[lo:hi])
                for load, (lo, hi) in zip(plain, self.bounds, strict=True)]

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        X, T = super().take(rows)
        w = self._s[np.asarray(rows, dtype=np.int64)]
        return X, np.ascontiguousarray(np.column_stack([T, w]), dtype=np.float64)


def fit_source(X: ChunkedSource, y: Any = None, *, sample_weight: Any = None,
               class_weight: Any = None, **options: Any) -> Any:
    """``pipeline.fit(X, None, **options)``, weighted by ``sample_weight`` (n,) and
    ``class_weight`` (``pipeline.fit``'s forms) when given; the class weights take one more
    pass over the targets alone (their class counts)."""
    import pipeline
    from pipeline.api import _solve
    from pipeline.solvers import check_compatibility, check_solver_options
    from pipeline.validation import check_hyperparameters, warn_ineffective
    from pipeline.weights import row_weights

    if sample_weight is None and class_weight is None:
        return pipeline.fit(X, y, **options)
    o = dict(options)
    model, reg, solver = o.pop("model"), o.pop("reg", "none"), o.pop("solver", "auto")
    backend, dtype = o.pop("backend", "cpu"), o.pop("dtype", "float64")
    o.pop("backend_options", None)
    callback, l1_ratio = o.pop("callback", None), o.pop("l1_ratio", None)
    check_compatibility(model, reg, solver, backend)
    lam, l1_ratio_, tol, max_iter, seed = check_hyperparameters(
        o.pop("lam", 0.0), 0.5 if l1_ratio is None else l1_ratio, o.pop("tol", 1e-7),
        o.pop("max_iter", 1000), o.pop("seed", 0))
    checked = check_solver_options(solver, o)
    warn_ineffective(reg, lam, l1_ratio is not None)
    classes = scan_targets(model, X)
    T = np.zeros((X.n_samples, 1))  # class codes: only class_weight reads them
    if class_weight is not None:
        assert classes is not None
        labels = np.concatenate([np.asarray(load()) for load in X.target_loaders()])
        T = np.searchsorted(classes, labels.reshape(len(labels))).astype(np.float64)[:, None]
    s = row_weights(model, sample_weight, class_weight, T, classes)
    assert s is not None
    objective = WeightedStreamedObjective(model, X, classes, s, dtype=dtype)
    result = _solve(objective, None, None, 0, reg, lam, l1_ratio_, solver, tol, max_iter, seed,
                    backend, callback, checked)
    result.classes, result.dtype = classes, dtype
    return result
