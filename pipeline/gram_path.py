"""Linear paths and CV on sufficient statistics: one pass over the data, none per lambda.

For ``model="linear"`` the data loss is a quadratic in ``theta = (W, b)``; with the row weights
s and ``S = sum s`` it is exactly

    L = (q - 2 theta^T C + theta^T A theta) / S,   A = [X 1]^T diag(s) [X 1],
    C = [X 1]^T diag(s) Y,  q = sum_l s_l y_l^2 (per output, summed over outputs),

so the loss, its gradient ``2 (A theta - C) / S`` and therefore every KKT check of a path point
follow from (A, C, q) without reading X. The sums are formed on shifted data
``X - mu, Y - t`` (mu, t the means of the first rows; the bias absorbs any shift exactly:
``b~ = b + mu^T W - t``): then q and A hold the spread of the data rather than its mean
squared, and the gradient loses no digits to cancellation when columns or targets have means
far from zero. ``GramObjective`` is an :class:`pipeline.objectives.Objective` on these sums, so
the path, coordinate descent and the closed form run on it unchanged.

Cross-validation forms the sums once per fold (its validation rows, in one pass over X in
all); a fold's training sums are the sum of the other folds', the refit's that of all folds,
and a fold's validation score (deviance, mse, r2) comes from its own sums.
"""

from __future__ import annotations

import numpy as np

from kernels.gram import BLAS_BLOCK_ROWS, blas_single_thread

from .objectives import Objective


class GramObjective(Objective):
    """The linear data loss from the shifted sums of one set of rows (no pass over X).

    Parameters
    ----------
    A : ndarray (k+1, k+1)  ``[X~ 1]^T diag(s) [X~ 1]`` with ``X~ = X - mu``.
    C : ndarray (k+1, m)    ``[X~ 1]^T diag(s) (Y - t)``.
    q : ndarray (m,)        ``sum_l s_l (y_l - t)^2`` per output.
    mu : ndarray (k,), t : ndarray (m,)  the shifts.
    n_samples : rows behind the sums; weighted : whether rows carry weights (S = A[k, k]).
    X : the data, kept only for ``abs_max`` (error messages); never read otherwise.
    """

    def __init__(self, A, C, q, mu, t, n_samples: int, weighted: bool, X=None):
        k, m = A.shape[0] - 1, C.shape[1]
        S = float(A[k, k])
        super().__init__("linear", n_samples, k, m, weight_total=S if weighted else None)
        self.A, self.C, self.q, self.mu, self.t = A, C, q, mu, t
        self.S = S if weighted else float(n_samples)
        self._X = X
        self._unpaid = n_samples  # the pass that formed the sums, charged to the first gram()
        self._scaled: tuple[np.ndarray, np.ndarray] | None = None

    def _charge(self) -> None:
        self.counter.rows += self._unpaid
        self._unpaid = 0

    def _theta(self, W, b) -> np.ndarray:
        return np.vstack([W, (b + self.mu @ W - self.t)[None, :]])

    def loss_grad(self, W, b, G_out, gb_out) -> float:
        """L and its gradient from the sums: (k+1)^2 m work, no pass over X."""
        theta = self._theta(np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64))
        R = self.A @ theta - self.C
        # q - 2 theta^T C + theta^T A theta, written as q - theta^T C + theta^T R
        loss = float(self.q.sum() - np.vdot(theta, self.C) + np.vdot(theta, R)) / self.S
        g = (2.0 / self.S) * R
        np.add(g[:-1], np.outer(self.mu, g[-1]), out=G_out)  # chain rule through b~
        gb_out[...] = g[-1]
        return max(loss, 0.0)

    def gram(self) -> tuple[np.ndarray, np.ndarray]:
        """``[X 1]^T diag(s) [X 1] / S`` and ``[X 1]^T diag(s) Y / S``, unshifted (as
        :meth:`Objective.gram`): ``[X 1] = [X~ 1] Q`` with ``Q = [[I, 0], [mu^T, 1]]``."""
        self._charge()
        if self._gram is None:
            k = self.n_features
            Q = np.eye(k + 1)
            Q[k, :k] = self.mu
            A = Q.T @ self.A @ Q
            A = np.triu(A) + np.triu(A, 1).T
            C = Q.T @ (self.C + np.outer(self.A[:, k], self.t))
            self._gram = (A / self.S, C / self.S)
        return self._gram[0].copy(), self._gram[1].copy()

    def solve(self, pen, W, b, tol: float, max_sweeps: int):
        """Minimise ``L + pen`` (``a1 |W|_1 + a2 |W|^2``) from (W, b) by coordinate descent on the
        shifted sums (``linear_direct._gram_lasso``: CD, polished by active-set steps), where
        the quadratic is the loss itself, so no correction by a data pass follows; CD's own
        test tightens until the gradient's residual is within ``tol``.

        Returns (W, b, L, dL/dW, dL/db, residual, sweeps, criterion): "subgradient" (the
        residual is within tol), "machine_precision" (it stopped falling; fit accepts up to
        100 tol) or "max_iter"."""
        from .solvers.linear_direct import _gram_lasso

        self._charge()
        if self._scaled is None:
            self._scaled = (self.A / self.S, self.C / self.S)
        A, C = self._scaled
        a1, a2 = pen.a1, pen.a2
        V, c = _from_wb(W, b, self.mu, self.t)
        G, gb = np.empty_like(V), np.empty(V.shape[1])
        sweeps, inner, best = 0, 1e-3 * tol, None
        while True:
            sweeps += _gram_lasso(A, C, V, c, a1, a2, inner, max(max_sweeps - sweeps, 1))
            Wn, bn = V.copy(), c - self.mu @ V + self.t
            loss = self.loss_grad(Wn, bn, G, gb)
            Gf = G + 2.0 * a2 * Wn if a2 else G
            residual = max(pen.subgrad_residual(Wn, Gf), float(np.abs(gb).max(initial=0.0)))
            if residual <= tol:
                return Wn, bn, loss, G, gb, residual, sweeps, "subgradient"
            if best is not None and residual >= 0.5 * best[5]:
                # a tighter CD no longer helps: the rounding of (W, b) itself (a bias far from
                # 0 moves G by 2 mean(x) per unit): machine precision, as fit judges it
                return (*best[:7], "machine_precision")
            if sweeps >= max_sweeps:
                return Wn, bn, loss, G, gb, residual, sweeps, "max_iter"
            best = (Wn, bn, loss, G.copy(), gb.copy(), residual, sweeps)
            inner *= 1e-3

    def intercept_only(self) -> np.ndarray:
        """The bias (m,) minimising L(0, b): the weighted mean of Y."""
        k = self.n_features
        return self.t + self.C[k] / self.A[k, k]

    def scores(self, W, b) -> dict[str, float]:
        """Validation scores of (W, b) on these rows: deviance (the loss), mse (averaged over
        outputs, as scikit-learn's) and r2 (per output, averaged)."""
        theta = self._theta(np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64))
        R = self.A @ theta - self.C
        res = self.q - np.einsum("ij,ij->j", theta, self.C) + np.einsum("ij,ij->j", theta, R)
        res = np.maximum(res, 0.0)  # per output: sum_l s_l (y_l - z_l)^2
        k = self.n_features
        tot = self.q - self.C[k] ** 2 / self.A[k, k]
        r2 = np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0),
                      np.where(res == 0, 1.0, 0.0))  # scikit-learn's constant-target cases
        return {"deviance": float(res.sum()) / self.S, "mse": float(res.mean()) / self.S,
                "r2": float(r2.mean())}

    def abs_max(self) -> float:
        return 0.0 if self._X is None else float(np.abs(self._X).max(initial=0.0))

    def map_chunks(self, op, *args):
        raise NotImplementedError("a GramObjective holds sums, not rows")


def _from_wb(W, b, mu, t):
    """(W, b) as the shifted problem's (W, b~): ``b~ = b + mu^T W - t``."""
    V = np.array(W, dtype=np.float64, order="C")
    return V, np.asarray(b, dtype=np.float64) + mu @ V - t


def shifts(X: np.ndarray, Y: np.ndarray, block: int = BLAS_BLOCK_ROWS):
    """Column means of the first ``block`` rows of X and Y: the shifts (any shift is exact)."""
    head = slice(0, min(block, X.shape[0]))
    return X[head].mean(axis=0), Y[head].mean(axis=0)


def sums(X, Y, s, rows, mu, t, block: int = BLAS_BLOCK_ROWS):
    """(A, C, q) of the rows ``rows`` (sorted indices, or None for all) of the shifted data,
    block of rows after block (one BLAS gemm each, one thread, fixed order)."""
    n_rows = X.shape[0] if rows is None else len(rows)
    k, m = X.shape[1], Y.shape[1]
    A, C, q = np.zeros((k + 1, k + 1)), np.zeros((k + 1, m)), np.zeros(m)
    b_rows = min(block, max(n_rows, 1))
    Xa, Sa = np.empty((b_rows, k + 1)), np.empty((b_rows, k + 1))
    Xa[:, k] = 1.0
    with blas_single_thread():
        for lo in range(0, n_rows, block):
            hi = min(n_rows, lo + block)
            Xb, Sb = Xa[:hi - lo], Sa[:hi - lo]
            if rows is None:
                np.subtract(X[lo:hi], mu, out=Xb[:, :k])
                Yb = Y[lo:hi] - t
                sb = None if s is None else s[lo:hi]
            else:
                idx = rows[lo:hi]
                np.subtract(np.take(X, idx, axis=0), mu, out=Xb[:, :k])
                Yb = np.take(Y, idx, axis=0) - t
                sb = None if s is None else s[idx]
            if sb is None:  # weights of 1 take the same products and give the same bits
                Sb[:] = Xb
                Sy = Yb
            else:
                np.multiply(Xb, sb[:, None], out=Sb)
                Sy = Yb * sb[:, None]
            A += Sb.T @ Xb
            C += Sb.T @ Yb
            q += np.einsum("ij,ij->j", Sy, Yb)
    return np.triu(A) + np.triu(A, 1).T, C, q


def objective(X, Y, s=None) -> GramObjective:
    """The GramObjective of all rows of (X, Y) with weights s (None: none): one pass."""
    Y = np.asarray(Y, dtype=np.float64).reshape(X.shape[0], -1)
    mu, t = shifts(X, Y)
    A, C, q = sums(X, Y, s, None, mu, t)
    return GramObjective(A, C, q, mu, t, X.shape[0], s is not None, X)


def fold_objectives(X, Y, s, val_rows: list[np.ndarray]):
    """(training objectives, validation objectives, all rows' objective) of the folds, from
    one set of sums per fold (one pass over X in all, by row gathers)."""
    Y = np.asarray(Y, dtype=np.float64).reshape(X.shape[0], -1)
    mu, t = shifts(X, Y)
    parts = [sums(X, Y, s, np.sort(v), mu, t) for v in val_rows]
    w = s is not None
    val = [GramObjective(A, C, q, mu, t, len(v), w, X)
           for (A, C, q), v in zip(parts, val_rows, strict=True)]

    def total(skip: int | None):
        chosen = [p for i, p in enumerate(parts) if i != skip]
        A, C, q = (x.copy() for x in chosen[0])
        for pA, pC, pq in chosen[1:]:  # in fold order: fixed bits
            A += pA
            C += pC
            q += pq
        return A, C, q

    n = X.shape[0]
    train = []
    for f, v in enumerate(val_rows):
        A, C, q = total(f)
        train.append(GramObjective(A, C, q, mu, t, n - len(v), w, X))
    A, C, q = total(None)
    return train, val, GramObjective(A, C, q, mu, t, n, w, X)
