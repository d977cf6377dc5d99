"""What an objective computes on one chunk of rows: pure functions of arrays.

Every data source runs these on its chunks (in process, in a reading thread's wake, or on a
Dask worker) and the objective adds the results in chunk order (:func:`add_in_order`). Each
returns sums over the chunk's rows, never means, so that the chunks' parts add up to the whole;
the objective divides by n once. Each takes the chunk's ``X`` (rows, k) and encoded targets
``T`` (rows, m) first, so a source can call any of them the same way.
"""

from __future__ import annotations

import numpy as np

import kernels
from kernels.gram import logistic_hessian as _logistic_hessian


def loss_grad(X, T, kind: int, W, b,
              weighted: bool = False) -> tuple[float, np.ndarray, np.ndarray]:
    """Summed loss and its gradient (k, m), (m,) over the chunk's rows (one pass);
    ``weighted``: each row's terms times its weight (the last column of T)."""
    G, gb = np.empty(W.shape), np.empty(b.shape)
    loss = kernels.loss_grad(kind, X, T, W, b, G, gb, mean=False, weighted=weighted)
    return loss, G, gb


def hessp(X, T, kind: int, W, b, V, vb,
          weighted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Summed loss's Hessian at (W, b) applied to (V, vb) (one pass)."""
    H, hb = np.empty(W.shape), np.empty(b.shape)
    kernels.hessp(kind, X, W, b, V, vb, H, hb, mean=False, T=T, weighted=weighted)
    return H, hb


def gram(X, T, weighted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``[X 1]^T [X 1]`` (k+1, k+1) and ``[X 1]^T T`` (k+1, m), summed (one pass; weighted:
    ``diag(s)`` between the factors, s the last column of T, which C leaves out)."""
    return kernels.gram(X, T, mean=False, weighted=weighted)


def logistic_hessian(X, T, w, b: float, weighted: bool = False) -> np.ndarray:
    """``[X 1]^T diag(sigma'(z)) [X 1]`` (k+1, k+1) at ``z = X w + b``, summed (one pass)."""
    return _logistic_hessian(X, w, b, mean=False, T=T, weighted=weighted)


def sampled_hessian(X, T, rows, kind: int, W, b, weighted: bool = False) -> np.ndarray:
    """The summed loss's Hessian in (W, b) over the chunk's rows ``rows`` (local indices), as
    a ((k+1) m, (k+1) m) array, outputs major (entry ``j (k+1) + i``: weight i of output j,
    i = k the bias). Per row: ``c ⊗ a a^T`` with ``a = [x 1]`` and ``c`` the loss's curvature
    in z (m, m): 2 I for linear, diag(sigma'(z)) for the sigmoid models, diag(p) - p p^T for
    softmax (times the row's weight, ``weighted``). One BLAS product of the sampled rows."""
    k, m = W.shape
    A = np.ones((len(rows), k + 1))
    A[:, :k] = X[rows]
    Z = A[:, :k] @ W + b
    s = T[rows, -1] if weighted else np.ones(len(rows))
    if kind == kernels.SOFTMAX:
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        B = (P[:, :, None] * A[:, None, :]).reshape(len(rows), -1)  # rows x (p_j a)
        H = -(B * s[:, None]).T @ B
        for j in range(m):
            blk = slice(j * (k + 1), (j + 1) * (k + 1))
            H[blk, blk] += (A * (s * P[:, j])[:, None]).T @ A
        return H
    if kind == kernels.LINEAR:
        D = np.full(Z.shape, 2.0)
    else:
        e = np.exp(-np.abs(Z))
        D = e / ((1.0 + e) * (1.0 + e))
    H = np.zeros(((k + 1) * m, (k + 1) * m))
    for j in range(m):
        blk = slice(j * (k + 1), (j + 1) * (k + 1))
        H[blk, blk] = (A * (s * D[:, j])[:, None]).T @ A
    return H


def classified(X, T, model: str, W, b, weighted: bool = False) -> np.ndarray:
    """Per output: does (W, b) put every row of the chunk strictly on its right side?

    softmax: one flag (the true class's logit above every other); else one flag per output
    column (its sign agrees with the 0/1 target). The chunks' flags combine with ``and``.
    Rows of weight 0 are not part of the loss and are left out (``weighted``).
    """
    Z = kernels.decision_function(X, W, b)
    if weighted:  # the logits of the rows that count: X itself is not copied
        keep = T[:, -1] > 0.0
        Z, T = Z[keep], T[keep, :-1]
    if model == "softmax":
        rows = np.arange(Z.shape[0])
        cls = T[:, 0].astype(np.intp)
        true = Z[rows, cls].copy()
        Z[rows, cls] = -np.inf
        return np.array([bool(np.all(true > Z.max(axis=1, initial=-np.inf)))])
    return np.all(np.where(T > 0.5, Z, -Z) > 0, axis=0)


def abs_max(X, T) -> float:
    """Largest |X| in the chunk (0 for no rows)."""
    if X.size == 0:
        return 0.0
    return float(max(np.max(X), -np.min(X)))


def add_in_order(parts: list):
    """The sum of the chunks' parts, added in chunk order (so always the same bits).

    ``parts`` holds one tuple per chunk (floats and arrays) or one array per chunk; the first
    part is the start (``0 + x`` would turn a -0.0 into 0.0 and break the one-chunk identity).
    """
    if not parts:
        raise ValueError("no chunks to add")
    first = parts[0]
    if isinstance(first, tuple):
        total = [np.array(p, dtype=np.float64, copy=True) for p in first]
        for part in parts[1:]:
            for acc, p in zip(total, part, strict=True):
                acc += p
        return tuple(float(t) if t.ndim == 0 else t for t in total)
    total_arr = np.array(first, dtype=np.float64, copy=True)
    for part in parts[1:]:
        total_arr += part
    return total_arr
