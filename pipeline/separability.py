"""Linear separability by linear programming: the certificate that an unpenalised classifier
has no finite optimum.

If some (W, b) puts every training row strictly on its right side, scaling it up drives the
cross-entropy to 0 without ever reaching it. One feasibility LP finds such a (W, b) or proves
none exists, before any training pass is spent.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, hstack, vstack

# LPs above this many constraint entries are left to the solvers' in-loop check.
MAX_LP_ENTRIES = 500_000


def _binary(X: np.ndarray, t: np.ndarray):
    """(w, b) with s_i (w x_i + b) >= 1, s_i = +-1, or None when none exists."""
    s = np.where(t > 0.5, 1.0, -1.0)
    A = -np.column_stack([X * s[:, None], s])
    res = linprog(np.zeros(A.shape[1]), A_ub=A, b_ub=-np.ones(len(s)), bounds=(None, None),
                  method="highs")
    return res.x if res.status == 0 else None


def _multiclass(X: np.ndarray, cls: np.ndarray, m: int):
    """Theta (k+1, m) with z_true - z_c >= 1 for every row and every other class c, or None."""
    n, k = X.shape
    Xa = csr_matrix(np.column_stack([X, np.ones(n)]))
    blocks = []
    for c in range(m):
        rows = np.flatnonzero(cls != c)
        E = np.zeros((len(rows), m))
        E[np.arange(len(rows)), cls[rows]] = 1.0
        E[:, c] = -1.0
        blocks.append(_row_constraints(Xa[rows], E))
    A = -vstack(blocks).tocsr()
    res = linprog(np.zeros(A.shape[1]), A_ub=A, b_ub=-np.ones(A.shape[0]), bounds=(None, None),
                  method="highs")
    return res.x.reshape(k + 1, m) if res.status == 0 else None


def _row_constraints(Xa_rows, E):
    """Rows of (x_i outer e_i) flattened feature-major: x_i^T Theta e_i >= 1."""
    parts = [Xa_rows.multiply(E[:, [c]]) for c in range(E.shape[1])]
    # column index j * m + c  <- interleave the per-class blocks
    M = hstack(parts).tocsc()
    k1, m = Xa_rows.shape[1], E.shape[1]
    order = np.arange(k1 * m).reshape(m, k1).T.ravel()
    return M[:, order]


def separating_point(model: str, X: np.ndarray, T: np.ndarray, n_classes: int):
    """A (W, b) that strictly separates the training data, None if none exists (or too big).

    ``T`` as the kernels take it: (n, 1) class index for softmax, (n, 1) 0/1 for logistic.
    Other models (and larger problems) return None and rely on the solvers' in-loop check,
    which stops once the iterate itself separates the data.
    """
    if model not in ("logistic", "softmax"):
        return None
    n, k = X.shape
    X = np.asarray(X, dtype=np.float64)
    if model == "softmax":
        if n * (n_classes - 1) * (k + 1) > MAX_LP_ENTRIES:
            return None
        theta = _multiclass(X, T[:, 0].astype(np.intp), n_classes)
        return None if theta is None else (theta[:k].copy(), theta[k].copy())
    if n * (k + 1) > MAX_LP_ENTRIES:
        return None
    wb = _binary(X, T[:, 0])
    return None if wb is None else (wb[:k].reshape(k, 1).copy(), wb[k:].copy())
