"""Data losses L(W, b) of the lecture's models: the seam between solvers and data.

A solver asks an :class:`Objective` for everything it needs from the data (loss and gradient,
Hessian-vector products, the Gram matrix, a weighted Gram, a row sample, predictions) and never
touches ``X`` or the pass counter itself. The data live in row chunks; each method is a
reduction over chunks (``pipeline.chunk_ops`` on every chunk, added in chunk order), so a new
source of chunks (a file streamed from disk, the workers of a cluster) only says how to run an
operation on every chunk (:meth:`Objective.map_chunks`) and how to fetch given rows
(:meth:`Objective.take`). :class:`ArrayObjective` is the in-memory source; with one chunk (its
default) it is today's single fused pass, and with the chunking of another source it gives that
source's bits exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import kernels

from . import chunk_ops

# Curvature of the per-row loss in z: bounds the Hessian by c * [X 1]^T [X 1] / n.
_CURVATURE = {"linear": 2.0, "logistic": 0.25, "multilabel": 0.25, "ovr": 0.25, "softmax": 0.5}


def encode_targets(model: str, T: np.ndarray, n_classes: int,
                   sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Kernel-ready targets: one-hot columns for one-vs-rest, the rest as given; with
    ``sample_weight`` (n,), one more column holding the row weights (the kernels' ``weighted``
    form, so that every chunk, row sample and worker carries its rows' weights)."""
    if model == "ovr":
        T = np.ascontiguousarray(np.eye(n_classes)[T[:, 0].astype(np.intp)])
    if sample_weight is None:
        return T
    return np.ascontiguousarray(np.column_stack([T, sample_weight]), dtype=np.float64)


def n_outputs(model: str, T: np.ndarray, n_classes: int) -> int:
    """Width m of W for this model: classes for softmax/ovr, 1 for logistic, columns otherwise."""
    return n_classes if model in ("softmax", "ovr") else T.shape[1]


class PassCounter:
    """Rows read so far, shared by an objective and its row samples: the cost measure of every
    solver, in full passes over the data (a sample of s rows costs s / n of a pass)."""

    def __init__(self, n_samples: int):
        self.n_samples = max(int(n_samples), 1)
        self.rows = 0

    @property
    def passes(self) -> int:
        return int(round(self.rows / self.n_samples))


class Objective:
    """Mean data loss of ``model`` over data held in row chunks (subclasses say where).

    Parameters
    ----------
    model : str
        One of linear, logistic, softmax, ovr, multilabel.
    n_samples, n_features : int
        Shape (n, k) of X over all chunks.
    n_outputs : int
        Width m of W.
    counter : PassCounter, optional
        The counter to charge (a row sample charges its parent's).
    weight_total : float, optional
        Sum S of the row weights, which the encoded targets then carry as their last column
        (``encode_targets``): the loss is ``sum_l s_l loss_l / S``. None: no weights (S = n).
    """

    # Bytes of X a row sample may hold (newton's Hessian sample): a larger one is not taken
    # but accumulated chunk by chunk (``sampled_hessian``). Sources with X in memory hold any.
    max_sample_bytes: float = math.inf

    def __init__(self, model: str, n_samples: int, n_features: int, n_outputs: int,
                 counter: PassCounter | None = None, weight_total: float | None = None):
        self.model = model
        self.kind = kernels.KINDS[model]
        self.n_samples, self.n_features, self.n_outputs = n_samples, n_features, n_outputs
        self.counter = counter or PassCounter(n_samples)
        self.weighted = weight_total is not None
        # S = n without weights: dividing by it is then exactly the mean over rows
        self.weight_total = float(n_samples) if weight_total is None else float(weight_total)
        self._gram: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ what a source provides
    def map_chunks(self, op: Callable[..., Any], *args) -> list:
        """``op(X_c, T_c, *args)`` for every chunk c, as a list in chunk order (one pass)."""
        raise NotImplementedError

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the rows ``rows`` (indices; sorted is cheapest) of X and the encoded T."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reductions over chunks
    @property
    def n_passes(self) -> int:
        """Full passes over X so far (row samples count their share)."""
        return self.counter.passes

    def _reduce(self, op: Callable[..., Any], *args):
        self.counter.rows += self.n_samples
        return chunk_ops.add_in_order(self.map_chunks(op, *args))

    def zeros(self) -> tuple[np.ndarray, np.ndarray]:
        """A zero point (W, b) of the right shapes."""
        return np.zeros((self.n_features, self.n_outputs)), np.zeros(self.n_outputs)

    def loss_grad(self, W, b, G_out, gb_out) -> float:
        """L(W, b); writes dL/dW into ``G_out`` and dL/db into ``gb_out``. One pass over X."""
        loss, G, gb = self._reduce(chunk_ops.loss_grad, self.kind, W, b, self.weighted)
        scale = 1.0 / self.weight_total
        np.multiply(G, scale, out=G_out)
        np.multiply(gb, scale, out=gb_out)
        return loss / self.weight_total

    def loss(self, W, b) -> float:
        """L(W, b) alone (one pass; the gradient is computed and dropped)."""
        G, gb = self.zeros()
        return self.loss_grad(W, b, G, gb)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        """Hessian of L at (W, b) applied to (V, vb). One pass over X."""
        H, hb = self._reduce(chunk_ops.hessp, self.kind, W, b, V, vb, self.weighted)
        scale = 1.0 / self.weight_total
        np.multiply(H, scale, out=H_out)
        np.multiply(hb, scale, out=hb_out)

    def gram(self) -> tuple[np.ndarray, np.ndarray]:
        """``A = [X 1]^T [X 1] / n`` (k+1, k+1) and ``C = [X 1]^T T / n`` (k+1, m) (weighted:
        ``[X 1]^T diag(s) [X 1] / S`` and ``[X 1]^T diag(s) T / S``).

        One pass the first time; kept afterwards (the data do not change), so that fits
        warm-started on the same objective (a regularisation path) share it. Copies returned.
        """
        if self._gram is None:
            A, C = self._reduce(chunk_ops.gram, self.weighted)
            self._gram = (A / self.weight_total, C / self.weight_total)
        return self._gram[0].copy(), self._gram[1].copy()

    def logistic_hessian(self, w, b: float) -> np.ndarray:
        """``[X 1]^T diag(sigma'(z)) [X 1] / n`` (k+1, k+1) at ``z = X w + b`` (logistic; the
        weighted Gram of Newton's method on a row sample). One pass."""
        w = np.ascontiguousarray(w, dtype=np.float64)
        return (self._reduce(chunk_ops.logistic_hessian, w, float(b), self.weighted)
                / self.weight_total)

    def classifies_all(self, W, b) -> bool:
        """True when (W, b) puts every row strictly on its right side, for some output (all
        outputs together for softmax): the separability certificate. One pass."""
        self.counter.rows += self.n_samples
        flags = self.map_chunks(chunk_ops.classified, self.model, W, b, self.weighted)
        return bool(np.any(np.logical_and.reduce(flags)))

    def abs_max(self) -> float:
        """Largest |X| (for error messages; one read, not counted as a solver's pass)."""
        return max(self.map_chunks(chunk_ops.abs_max), default=0.0)

    def sample(self, rows: np.ndarray) -> ArrayObjective:
        """The same loss on the rows ``rows`` (a copy of them: mini-batches, Hessian samples);
        its passes are charged to this objective's counter at their share of a pass.

        Weighted: the sample's sums are divided by ``len(rows) * S / n`` (its rows' share of
        S), not by their own weights' sum, so a sample's gradient is an unbiased estimate and
        a sample of zero-weight rows gives zeros, never 0 / 0.
        """
        X, T = self.take(rows)
        return ArrayObjective(self.model, X, T, n_outputs=self.n_outputs, encoded=True,
                              counter=self.counter, weight_total=self._share(len(rows)))

    def sampled_hessian(self, rows: np.ndarray, W, b) -> np.ndarray:
        """The mean loss's Hessian in (W, b) on the sorted rows ``rows``, ((k+1) m)^2 as
        :func:`pipeline.chunk_ops.sampled_hessian` orders it, each chunk's sampled rows added
        in chunk order, so only that matrix is held, never the rows. One pass."""
        starts = np.array([lo for lo, _ in self.bounds])  # type: ignore[attr-defined]
        which = np.searchsorted(starts, rows, side="right") - 1
        cuts = np.searchsorted(which, np.arange(len(starts) + 1))
        local = [rows[cuts[c]:cuts[c + 1]] - starts[c] for c in range(len(starts))]
        self.counter.rows += self.n_samples
        parts = self.map_chunks_indexed(chunk_ops.sampled_hessian, local, self.kind,
                                        np.ascontiguousarray(W, dtype=np.float64),
                                        np.asarray(b, dtype=np.float64), self.weighted)
        share = self._share(len(rows))
        return chunk_ops.add_in_order(parts) / (len(rows) if share is None else share)

    def map_chunks_indexed(self, op, per_chunk: list, *args) -> list:
        """``op(X_c, T_c, per_chunk[c], *args)`` for every chunk c, in chunk order (one
        pass): :meth:`map_chunks` with one argument of its own per chunk (in process only:
        the call holds a closure)."""
        it = iter(per_chunk)
        return self.map_chunks(lambda X, T, *a: op(X, T, next(it), *a), *args)

    def _share(self, rows: int) -> float | None:
        """The weight total a sample of ``rows`` rows divides by (None: unweighted)."""
        return rows * (self.weight_total / self.n_samples) if self.weighted else None

    def _sample_rows(self, max_rows: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """At most ``max_rows`` sorted random rows (all of them if fewer) of X as float64, and
        their weights (None: unweighted, or weights all equal: the same moments)."""
        n = self.n_samples
        rows = (np.arange(n) if n <= max_rows
                else np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False)))
        X, T = self.take(rows)
        s = T[:, -1] if self.weighted else None
        if s is not None and (not s.any() or np.all(s == s[0])):
            s = None
        return np.asarray(X, dtype=np.float64), s

    def column_moments(self, max_rows: int = 20_000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each column, estimated on at most ``max_rows`` rows
        (weighted means with weights, so that a fit with integer weights takes the steps of
        the fit on repeated rows).

        Estimates suffice: they choose the solvers' coordinates (``solvers._scaling``), which
        are exact whatever the values. The sampled rows are copied, never X.
        """
        Xs, s = self._sample_rows(max_rows, seed)
        if s is not None:
            mean = s @ Xs / s.sum()
            return mean, np.sqrt(s @ (Xs - mean) ** 2 / s.sum())
        mean = Xs.mean(axis=0)
        return mean, np.sqrt(np.mean((Xs - mean) ** 2, axis=0))

    def curvature(self) -> float:
        """Bound on the per-row loss's second derivative in z (the Hessian's scale)."""
        return _CURVATURE[self.model]

    def lipschitz(self, max_rows: int = 50_000, n_iter: int = 30, seed: int = 0) -> float:
        """Upper estimate of the gradient's Lipschitz constant in (W, b).

        Power iteration on ``[X 1]^T [X 1] / n`` over at most ``max_rows`` sampled rows, times
        the loss's curvature bound and a 10% margin. Cheap; backtracking guards the rest.
        """
        rng = np.random.default_rng(seed)
        n = self.n_samples
        rows = np.arange(n) if n <= max_rows else np.sort(rng.choice(n, max_rows, replace=False))
        Xs, s = self._power_rows(rows)
        if s is not None and not s.sum() > 0.0:
            s = None  # the sample holds only rows of weight 0: their plain Gram bounds it
        v = rng.standard_normal(self.n_features + 1)
        lam = 1.0
        for _ in range(n_iter):
            u = Xs @ v[:-1] + v[-1]
            if s is not None:
                u = u * s
            w = np.append(Xs.T @ u, u.sum()) / (Xs.shape[0] if s is None else s.sum())
            lam = float(np.linalg.norm(w))
            if lam == 0.0:
                return 1.0
            v = w / lam
        return 1.1 * _CURVATURE[self.model] * lam

    def _power_rows(self, rows: np.ndarray):
        """The sampled rows the power iteration multiplies by, float64, and their weights
        (None: unweighted), from one ``take`` (a source whose rows are better kept in their
        own form, e.g. sparse, overrides this alone)."""
        X, T = self.take(rows)
        return np.asarray(X, dtype=np.float64), T[:, -1] if self.weighted else None

    def targets(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The encoded targets (n, m) without the weight column, and the weights (or None),
        of a source holding its targets in memory as ``T`` (arrays, sparse)."""
        T = self.T  # type: ignore[attr-defined]
        return (T, None) if not self.weighted else (T[:, :-1], T[:, -1])


class ArrayObjective(Objective):
    """The data in memory: X (n, k) and T as arrays, split into chunks of ``chunk_rows`` rows.

    Parameters
    ----------
    model : str
    X : ndarray (n, k), float64 or float32, C-contiguous (never copied; chunks are views).
    T : ndarray (n, m) float64
        Targets as :func:`pipeline.validation.check_targets` returns them (or already encoded
        for the model, with ``encoded=True`` and ``n_outputs`` given).
    n_classes : int
        Number of classes (softmax, ovr), else ignored.
    sample_weight : ndarray (n,) float64, optional
        Checked non-negative row weights (``pipeline.weights``); None: every row weighs 1.
    chunk_rows : int, optional
        Rows per chunk. None: one chunk (one fused pass). Give another source's chunking to
        reproduce its results bit for bit.
    weight_total : float, optional
        With ``encoded=True``: T already carries the weights in its last column, and this is
        the total the sums are divided by (see :meth:`Objective.sample`).
    """

    def __init__(self, model: str, X: np.ndarray, T: np.ndarray, n_classes: int = 0, *,
                 sample_weight: np.ndarray | None = None, chunk_rows: int | None = None,
                 n_outputs: int | None = None, encoded: bool = False,
                 counter: PassCounter | None = None, weight_total: float | None = None):
        m = n_outputs if n_outputs is not None else _n_outputs(model, T, n_classes)
        if not encoded and sample_weight is not None:
            weight_total = math.fsum(sample_weight)  # exactly rounded: any order, same bits
        super().__init__(model, X.shape[0], X.shape[1], m, counter, weight_total)
        self.X = X
        self.T = T if encoded else encode_targets(model, T, n_classes, sample_weight)
        n = X.shape[0]
        step = n if chunk_rows is None else max(int(chunk_rows), 1)
        self.bounds = [(lo, min(n, lo + step)) for lo in range(0, max(n, 1), max(step, 1))]

    def map_chunks(self, op, *args) -> list:
        return [op(self.X[lo:hi], self.T[lo:hi], *args) for lo, hi in self.bounds]

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(self.X[rows]), np.ascontiguousarray(self.T[rows])

    def on_columns(self, cols: np.ndarray) -> ArrayObjective:
        """The same loss with only the features ``cols`` (a copy of those columns; the rows,
        targets and weights shared): a screened path's working set."""
        return ArrayObjective(self.model, np.take(self.X, cols, axis=1), self.T,  # 6x X[:, c]
                              n_outputs=self.n_outputs, encoded=True,
                              weight_total=self.weight_total if self.weighted else None)

    def _one_chunk(self) -> bool:
        return len(self.bounds) == 1 and not self.weighted

    # One chunk: the kernels' own means, the same bits as the reduction above with less work
    # (weighted: the reduction, which divides by the weights' total rather than by n).
    def loss_grad(self, W, b, G_out, gb_out) -> float:
        if not self._one_chunk():
            return super().loss_grad(W, b, G_out, gb_out)
        self.counter.rows += self.n_samples
        return kernels.loss_grad(self.kind, self.X, self.T, W, b, G_out, gb_out)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        if not self._one_chunk():
            return super().hessp(W, b, V, vb, H_out, hb_out)
        self.counter.rows += self.n_samples
        kernels.hessp(self.kind, self.X, W, b, V, vb, H_out, hb_out)

    def decision(self, W, b) -> np.ndarray:
        """Logits Z = X W + b (n, m): the predictions. One pass over X."""
        self.counter.rows += self.n_samples
        return kernels.decision_function(self.X, W, b)


_n_outputs = n_outputs  # the module function, under a name the constructor's argument leaves free
