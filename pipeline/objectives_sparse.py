"""The objective over a scipy.sparse CSR matrix: the seam's sparse data source.

The chunk operations of ``pipeline.chunk_ops`` are dense, so :class:`SparseObjective` answers
every method the solvers call with the CSR kernels of ``kernels.sparse`` instead: loss and
gradient, Hessian-vector products, logits, the Gram and the logistic weighted Gram (dense
(k+1)^2, so only for small k), column moments and the Lipschitz estimate by sparse arithmetic.
X is never densified and never centred (the solvers' centring is a change of coordinates of
(W, b), not of X). A row sample (Hessian samples, mini-batches) is a sparse objective on those
rows, charged to the parent's pass counter.
"""

from __future__ import annotations

import math

import numpy as np

from kernels import sparse as ks

from .objectives import Objective, PassCounter, encode_targets, n_outputs

_DENSE_SOLVERS = "closed_form, cd and prox_newton (model=logistic)"
_SPARSE_SOLVERS = "lbfgs, split_lbfgs, newton, gd, agd or sgd"


class SparseObjective(Objective):
    """Mean data loss of ``model`` over a CSR matrix X (n, k), float64 or float32.

    Parameters
    ----------
    model : str
    X : scipy.sparse.csr_matrix or csr_array (n, k): used as it is (never copied); a CSC copy
        is made once only when needed (the Gram, or k m too large for per-block partials).
    T : ndarray (n, m) float64, targets as ``check_targets`` returns them (or already encoded,
        with ``encoded=True`` and ``n_outputs`` given).
    n_classes : int
    sample_weight, weight_total : the row weights, as for ``ArrayObjective``.
    """

    def __init__(self, model: str, X, T: np.ndarray, n_classes: int = 0, *,
                 sample_weight: np.ndarray | None = None, n_outputs: int | None = None,
                 encoded: bool = False, counter: PassCounter | None = None,
                 weight_total: float | None = None):
        m = n_outputs if n_outputs is not None else _n_outputs(model, T, n_classes)
        if not encoded and sample_weight is not None:
            weight_total = math.fsum(sample_weight)
        super().__init__(model, X.shape[0], X.shape[1], m, counter, weight_total)
        self.X = X
        self.csr = (X.data, X.indices, X.indptr)
        self.T = T if encoded else encode_targets(model, T, n_classes, sample_weight)
        self._csc: tuple | None = None
        self._scratch: np.ndarray | None = None
        # each row's Hessian curvature at the last (W, b) of a Hessian product, and that point
        self._curv: np.ndarray | None = None
        self._curv_at: tuple[np.ndarray, np.ndarray] | None = None
        # X^T D by per-block partials while they fit, else by the column pass over a CSC copy
        self.partials = ks.use_partials(self.n_samples, self.n_features, m)

    # ------------------------------------------------------------------ what a source provides
    def map_chunks(self, op, *args) -> list:
        """``op`` on the whole CSR matrix as one chunk (the dense chunk ops do not take it)."""
        return [op(self.X, self.T, *args)]

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Dense copies of the rows ``rows`` (for a caller that needs a small dense sample)."""
        return (np.ascontiguousarray(self.X[rows].toarray()),
                np.ascontiguousarray(self.T[rows]))

    # ------------------------------------------------------------------ kernels
    @property
    def csc(self) -> tuple:
        """The CSC arrays of X (made once: a second copy of the non-zeros)."""
        if self._csc is None:
            self._csc = ks.csc_of(*self.csr, self.n_features)
        return self._csc

    def _buffer(self) -> np.ndarray:
        if self._scratch is None:
            self._scratch = np.empty((self.n_samples, self.n_outputs))
        return self._scratch

    # Without weights the kernels' own means (S = n); with them the sums divided by S.
    def loss_grad(self, W, b, G_out, gb_out) -> float:
        self.counter.rows += self.n_samples
        w, mean = self.weighted, not self.weighted
        if self.partials:
            loss = ks.loss_grad(self.kind, self.csr, None, self.T, W, b, G_out, gb_out,
                                mean=mean, weighted=w)
        else:
            loss = ks.loss_grad(self.kind, self.csr, self.csc, self.T, W, b, G_out, gb_out,
                                D_out=self._buffer(), mean=mean, weighted=w)
        return loss if mean else self._scaled(loss, G_out, gb_out)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        self.counter.rows += self.n_samples
        w, mean = self.weighted, not self.weighted
        if self.partials:
            ks.hessp(self.kind, self.csr, None, W, b, V, vb, H_out, hb_out, mean=mean,
                     T=self.T, weighted=w, curv=self._curv_buffer(),
                     curv_mode=self._curv_mode(W, b))
        else:
            ks.hessp(self.kind, self.csr, self.csc, W, b, V, vb, H_out, hb_out,
                     U_out=self._buffer(), mean=mean, T=self.T, weighted=w)
        if not mean:
            self._scaled(0.0, H_out, hb_out)

    def _curv_buffer(self) -> np.ndarray:
        if self._curv is None:
            self._curv = np.empty((self.n_samples, self.n_outputs))
        return self._curv

    def _curv_mode(self, W, b) -> int:
        """CURV_USE when (W, b) equals the point of the last Hessian product (CG's products
        all sit at one point: each then skips the logits), else CURV_STORE, remembering it."""
        at = self._curv_at
        if at is not None and np.array_equal(at[0], W) and np.array_equal(at[1], b):
            return ks.CURV_USE
        self._curv_at = (np.array(W, dtype=np.float64), np.array(b, dtype=np.float64))
        return ks.CURV_STORE

    def _scaled(self, total: float, G_out, gb_out) -> float:
        """Sums over rows -> weighted means (divided by the weights' total S), in place."""
        scale = 1.0 / self.weight_total
        G_out *= scale
        gb_out *= scale
        return total / self.weight_total

    def on_columns(self, cols: np.ndarray) -> SparseObjective:
        """The same loss with only the features ``cols`` (a CSR copy of those columns): a
        screened path's working set."""
        return SparseObjective(self.model, self.X[:, cols].tocsr(), self.T,
                               n_outputs=self.n_outputs, encoded=True,
                               weight_total=self.weight_total if self.weighted else None)

    def decision(self, W, b) -> np.ndarray:
        """Logits Z = X W + b (n, m). One pass over X."""
        self.counter.rows += self.n_samples
        return ks.decision_function(self.csr, W, b, self.n_features)

    def _check_gram(self, what: str) -> None:
        if self.n_features > ks.GRAM_MAX_FEATURES:
            raise ValueError(
                f"{what} of a sparse X needs a dense (k+1) x (k+1) matrix, and k = "
                f"{self.n_features} is above {ks.GRAM_MAX_FEATURES}: the solvers "
                f"{_DENSE_SOLVERS} work on sparse X only for that few features; use "
                f"{_SPARSE_SOLVERS} (or solver='auto')")

    def gram(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_gram("the Gram matrix")
        if self._gram is None:
            self.counter.rows += self.n_samples
            T, s = self.targets()
            A, C = ks.gram(self.csr, self.csc, T, weights=s, mean=False)
            self._gram = (A / self.weight_total, C / self.weight_total)
        return self._gram[0].copy(), self._gram[1].copy()

    def logistic_hessian(self, w, b: float) -> np.ndarray:
        self._check_gram("the logistic Hessian")
        self.counter.rows += self.n_samples
        w = np.ascontiguousarray(np.reshape(w, (-1, 1)), dtype=np.float64)
        z = ks.decision_function(self.csr, w, np.array([float(b)]), self.n_features)[:, 0]
        e = np.exp(-np.abs(z))
        T, s = self.targets()
        d = e / ((1.0 + e) * (1.0 + e))
        H = ks.gram(self.csr, self.csc, T, weights=d if s is None else d * s, mean=False)[0]
        return H / self.weight_total

    def classifies_all(self, W, b) -> bool:
        Z = self.decision(W, b)
        T, s = self.targets()
        if s is not None:  # rows of weight 0 are not part of the loss
            Z, T = Z[s > 0], T[s > 0]
        if self.model == "softmax":
            rows = np.arange(Z.shape[0])
            cls = T[:, 0].astype(np.intp)
            true = Z[rows, cls].copy()
            Z[rows, cls] = -np.inf
            return bool(np.all(true > Z.max(axis=1, initial=-np.inf)))
        return bool(np.any(np.all(np.where(T > 0.5, Z, -Z) > 0, axis=0)))

    def abs_max(self) -> float:
        data = self.X.data
        return float(np.max(np.abs(data))) if data.size else 0.0

    def sample(self, rows: np.ndarray) -> SparseObjective:  # type: ignore[override]
        """The same loss on the rows ``rows`` (a sparse copy of them), charged to this
        objective's counter at their share of a pass."""
        Xs = self.X[np.asarray(rows)]
        return SparseObjective(self.model, Xs.tocsr(), np.ascontiguousarray(self.T[rows]),
                               n_outputs=self.n_outputs, encoded=True, counter=self.counter,
                               weight_total=self._share(len(rows)))

    def column_moments(self, max_rows: int = 20_000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and standard deviation of each column over all rows (one sparse read;
        ``max_rows`` and ``seed`` are the dense estimate's and not needed here)."""
        k, n = self.n_features, self.n_samples
        data = self.X.data.astype(np.float64)
        s = self.targets()[1]
        if s is None or np.all(s == s[0]):  # equal weights: the same moments
            w, total = data, float(n)
        else:  # weighted, as the dense estimate
            w, total = data * np.repeat(s, np.diff(self.X.indptr)), float(s.sum())
        s1, s2 = ks.column_sums(data, self.X.indices, w, k)
        mean = s1 / total
        return mean, np.sqrt(np.maximum(s2 / total - mean * mean, 0.0))

    def _power_rows(self, rows: np.ndarray):
        """:meth:`Objective.lipschitz`'s sampled rows as a sparse float64 matrix (its power
        iteration then runs on sparse products) and their weights (None: unweighted)."""
        return self.X[rows].astype(np.float64), self.T[rows, -1] if self.weighted else None


_n_outputs = n_outputs  # the module function, under a name the constructor's argument leaves free
