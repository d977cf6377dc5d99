"""``pipeline.fit`` for a chunked source with row weights: what the app's streamed runs use.

``pipeline.fit`` refuses ``sample_weight`` with a chunked source; here the weights s (n,),
held in memory like the targets, join each chunk's encoded targets as their last column (the
kernels' ``weighted`` form, as ``encode_targets`` gives an in-memory objective), so a weighted
streamed fit gives the bits of ``ArrayObjective(..., sample_weight=s, chunk_rows=...)``.
``class_weight`` multiplies them (``pipeline.weights.row_weights``, the API's rules) after one
pass over the targets alone. ``pipeline.fit`` builds it (``streamed.streamed_problem``) when
called as ``fit_source`` does; the public API still refuses weights on a source.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from pipeline.chunked import ChunkedSource
from pipeline.streamed import StreamedObjective


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


def weighted_objective(model: str, source: ChunkedSource, classes: np.ndarray | None,
                       sample_weight: Any, class_weight: Any,
                       dtype: str = "float64") -> WeightedStreamedObjective:
    """The objective of ``source`` weighted by ``sample_weight`` (n,) and ``class_weight``
    (``pipeline.fit``'s forms, ``pipeline.weights.row_weights``' rules); class weights take one
    more pass over the targets alone (their class codes)."""
    from pipeline.weights import row_weights

    T = np.zeros((source.n_samples, 1))  # class codes: only class_weight reads them
    if class_weight is not None:
        assert classes is not None
        labels = np.concatenate([np.asarray(load()) for load in source.target_loaders()])
        T = np.searchsorted(classes, labels.reshape(len(labels))).astype(np.float64)[:, None]
    s = row_weights(model, sample_weight, class_weight, T, classes)
    assert s is not None
    return WeightedStreamedObjective(model, source, classes, s, dtype=dtype)


def fit_source(X: ChunkedSource, y: Any = None, **options: Any) -> Any:
    """``pipeline.fit(X, y, **options)`` that also takes ``sample_weight`` / ``class_weight``
    on a chunked source (``backend="cpu"``), through ``weighted_objective``."""
    import pipeline

    return pipeline.fit(X, y, _source_weights=True, **options)
