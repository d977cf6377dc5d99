"""Loss, gradient, Hessian-vector, prediction and Gram kernels for a CSR matrix X.

The same conventions as ``kernels/losses.py`` (``T`` (n, m) encoded float64, ``W`` (k, m),
``b`` (m,), loss and gradient means over rows), with X given as the arrays of a CSR matrix:
``data`` (nnz,) float64 or float32, ``indices`` (nnz,) its columns, ``indptr`` (n+1,). X is
never densified and never centred; every sum is accumulated in float64.

A pass runs over fixed blocks of rows in parallel: each row's logits
``z = b + sum_p data[p] W[indices[p]]`` (in the row's stored order), its loss and
``d = dloss/dz``, then the gradient ``X^T D`` in one of two deterministic ways:

- per-block partials (the dense kernels' way): ``PARTIAL_BLOCKS`` row blocks (a number fixed
  by n, never by the thread count), each scattering ``d x^T`` into its own (k, m) partial while
  the row is in cache; partials added in block order. Used while the partials fit in
  ``PARTIAL_BYTES``.
- from a CSC copy of X made once by the caller (:func:`csc_of`): the row pass writes D (n, m),
  then each column's sum runs over its rows in row order, in parallel over columns. Each entry
  of G has one owner: neither the thread count nor the split of columns changes a bit. For
  k m too large for partials.

Measured (2 cores, 2e5 rows, ~35 non-zeros a row, power-law columns, one loss-and-gradient
pass): k = 1e3, m = 1: CSC 118 ms, partials 131 ms; m = 20: CSC 450 ms, partials 242 ms;
k = 2e4, m = 1: 131 against 143 ms; m = 20: 1268 against 651 ms. The column pass gathers rows
of D from all over memory; the partials stay in cache. Partials also spare the CSC copy (a
second copy of the non-zeros) and its build (0.2-0.4 s), so they are the default.

No fast-math flags: LLVM may not reorder or fuse a sum. exp and log are libm's (a few per row
against ~50 multiply-adds per non-zero and output), so on one CPU and library the bits are
fixed; across CPUs they agree with the dense kernels to rounding (tests/test_sparse.py).
"""

import math

import numpy as np
from numba import njit, prange

from ._config import BLOCK_ROWS, CACHE
from .losses import _NO_TARGETS, LINEAR, SIGMOID, SOFTMAX

# Columns per parallel task of the column pass are chosen so tasks hold about equal non-zeros;
# the split never changes a result (each column is summed by one task in row order).
COLUMN_TASKS = 256
# Largest k for the dense (k+1)^2 Gram of a sparse X (160 MB at this size).
GRAM_MAX_FEATURES = 4096
# Row blocks of the per-block partial gradients, and the most memory they may take together.
PARTIAL_BLOCKS = 16
PARTIAL_BYTES = 1 << 28
# Hessian products' row curvature (``hessp``'s ``curv_mode``): recompute it, also keep it,
# or read it back.
CURV_NONE, CURV_STORE, CURV_USE = 0, 1, 2
_NO_CURV = np.empty((0, 0))


def use_partials(n_samples, n_features, n_outputs):
    """True when the per-block partial gradients fit in ``PARTIAL_BYTES`` (else: CSC)."""
    nb = min(PARTIAL_BLOCKS, max(1, n_samples))
    return nb * n_features * n_outputs * 8 <= PARTIAL_BYTES


# --------------------------------------------------------------------------- per-row maths
@njit(cache=CACHE, error_model="numpy")
def _row_logits(data, indices, lo, hi, W, b, z_out):
    m = z_out.shape[0]
    for c in range(m):
        z_out[c] = b[c]
    for p in range(lo, hi):
        x = data[p]
        j = indices[p]
        for c in range(m):
            z_out[c] += x * W[j, c]


@njit(cache=CACHE, error_model="numpy")
def _row_loss_dz(kind, z, T, i, d_out, weighted):
    """The row's loss; writes dloss/dz into ``d_out``; both times the row's weight (the last
    column of T) when ``weighted``."""
    loss = _row_loss_dz_plain(kind, z, T, i, d_out)
    if weighted:
        s = T[i, T.shape[1] - 1]
        for c in range(d_out.shape[0]):
            d_out[c] *= s
        loss *= s
    return loss


@njit(cache=CACHE, error_model="numpy")
def _row_weighted(u, T, i, weighted):
    """``u`` times the row's weight (the last column of T) when ``weighted``."""
    if weighted:
        s = T[i, T.shape[1] - 1]
        for c in range(u.shape[0]):
            u[c] *= s


@njit(cache=CACHE, error_model="numpy")
def _row_loss_dz_plain(kind, z, T, i, d_out):
    """The row's loss; writes dloss/dz into ``d_out`` (stable forms, as in the spec)."""
    m = z.shape[0]
    loss = 0.0
    if kind == LINEAR:
        for c in range(m):
            r = z[c] - T[i, c]
            loss += r * r
            d_out[c] = 2.0 * r
        return loss
    if kind == SIGMOID:
        for c in range(m):
            t = z[c]
            e = math.exp(-abs(t))
            inv = 1.0 / (1.0 + e)
            pos = t >= 0.0
            loss += ((t if pos else 0.0) + math.log1p(e)) - T[i, c] * t
            d_out[c] = (inv if pos else e * inv) - T[i, c]
        return loss
    zmax = z[0]
    for c in range(1, m):
        zmax = max(zmax, z[c])
    s = 0.0
    for c in range(m):
        d_out[c] = math.exp(z[c] - zmax)
        s += d_out[c]
    cls = int(T[i, 0])
    inv = 1.0 / s
    for c in range(m):
        d_out[c] *= inv
    d_out[cls] -= 1.0
    return (zmax - z[cls]) + math.log(s)


@njit(cache=CACHE, error_model="numpy")
def _row_curv(kind, z):
    """Overwrite the row's logits ``z`` with what its Hessian needs: 2 (linear), the
    sigmoid's derivative (logistic), the probabilities (softmax)."""
    m = z.shape[0]
    if kind == LINEAR:
        for c in range(m):
            z[c] = 2.0
    elif kind == SIGMOID:
        for c in range(m):
            e = math.exp(-abs(z[c]))
            z[c] = e / ((1.0 + e) * (1.0 + e))
    else:
        zmax = z[0]
        for c in range(1, m):
            zmax = max(zmax, z[c])
        s = 0.0
        for c in range(m):
            z[c] = math.exp(z[c] - zmax)
            s += z[c]
        for c in range(m):
            z[c] /= s


@njit(cache=CACHE, error_model="numpy")
def _row_hess_curv(kind, q, u):
    """Overwrite ``u`` (= V^T x + vb) with the row's Hessian applied to it, from its
    :func:`_row_curv` ``q``."""
    m = q.shape[0]
    if kind != SOFTMAX:
        for c in range(m):
            u[c] *= q[c]
        return
    pu = 0.0
    for c in range(m):
        pu += q[c] * u[c]
    for c in range(m):
        u[c] = q[c] * (u[c] - pu)


@njit(cache=CACHE, error_model="numpy")
def _row_hess_dz(kind, z, u):
    """Overwrite ``u`` (= V^T x + vb) with the row's Hessian (in z) applied to it (z is
    overwritten)."""
    _row_curv(kind, z)
    _row_hess_curv(kind, z, u)


# --------------------------------------------------------------------------- row pass
@njit(cache=CACHE, error_model="numpy")
def _block_dz(kind, data, indices, indptr, T, W, b, start, stop, D_out, db_out, weighted):
    m = W.shape[1]
    z = np.empty(m)
    loss = 0.0
    for i in range(start, stop):
        _row_logits(data, indices, indptr[i], indptr[i + 1], W, b, z)
        loss += _row_loss_dz(kind, z, T, i, D_out[i], weighted)
        for c in range(m):
            db_out[c] += D_out[i, c]
    return loss


@njit(cache=CACHE, error_model="numpy")
def _block_hz(kind, data, indices, indptr, W, b, V, vb, start, stop, U_out, hb_out, T,
              weighted):
    m = W.shape[1]
    z = np.empty(m)
    for i in range(start, stop):
        lo, hi = indptr[i], indptr[i + 1]
        _row_logits(data, indices, lo, hi, W, b, z)
        _row_logits(data, indices, lo, hi, V, vb, U_out[i])
        _row_hess_dz(kind, z, U_out[i])
        _row_weighted(U_out[i], T, i, weighted)
        for c in range(m):
            hb_out[c] += U_out[i, c]


@njit(cache=CACHE, parallel=True)
def _rows_dz(kind, data, indices, indptr, T, W, b, D_out, db_out, block, weighted):
    """Loss summed over rows; ``D_out`` (n, m) = dloss/dz, ``db_out`` (m,) = its column sums."""
    n = indptr.shape[0] - 1
    m = W.shape[1]
    nb = (n + block - 1) // block
    part_l = np.zeros(nb)
    part_b = np.zeros((nb, m))
    for ib in prange(nb):
        start = ib * block
        part_l[ib] = _block_dz(kind, data, indices, indptr, T, W, b, start,
                               min(n, start + block), D_out, part_b[ib], weighted)
    loss = 0.0
    for c in range(m):
        db_out[c] = 0.0
    for ib in range(nb):
        loss += part_l[ib]
        for c in range(m):
            db_out[c] += part_b[ib, c]
    return loss


@njit(cache=CACHE, parallel=True)
def _rows_hz(kind, data, indices, indptr, W, b, V, vb, U_out, hb_out, block, T, weighted):
    n = indptr.shape[0] - 1
    m = W.shape[1]
    nb = (n + block - 1) // block
    part_b = np.zeros((nb, m))
    for ib in prange(nb):
        start = ib * block
        _block_hz(kind, data, indices, indptr, W, b, V, vb, start, min(n, start + block),
                  U_out, part_b[ib], T, weighted)
    for c in range(m):
        hb_out[c] = 0.0
    for ib in range(nb):
        for c in range(m):
            hb_out[c] += part_b[ib, c]


@njit(cache=CACHE, error_model="numpy")
def _scatter(data, indices, lo, hi, d, G_out):
    m = d.shape[0]
    for p in range(lo, hi):
        x = data[p]
        j = indices[p]
        for c in range(m):
            G_out[j, c] += x * d[c]


@njit(cache=CACHE, error_model="numpy")
def _row_loss_dz1(kind, t, y):
    """One output (linear, logistic): the row's loss and dloss/dz for logit ``t``, target
    ``y`` (the formulas of :func:`_row_loss_dz_plain`, on scalars)."""
    if kind == LINEAR:
        r = t - y
        return r * r, 2.0 * r
    e = math.exp(-abs(t))
    inv = 1.0 / (1.0 + e)
    pos = t >= 0.0
    return ((t if pos else 0.0) + math.log1p(e)) - y * t, (inv if pos else e * inv) - y


@njit(cache=CACHE, error_model="numpy")
def _block_grad1(kind, data, indices, indptr, T, W, b, start, stop, G_out, db_out, weighted):
    """:func:`_block_grad` for one output on scalars (the same operations in the same order,
    so the same bits): the logit and the derivative stay in registers."""
    b0 = b[0]
    db = db_out[0]
    last = T.shape[1] - 1
    loss = 0.0
    for i in range(start, stop):
        lo, hi = indptr[i], indptr[i + 1]
        t = b0
        for p in range(lo, hi):
            t += data[p] * W[indices[p], 0]
        li, d = _row_loss_dz1(kind, t, T[i, 0])
        if weighted:
            s = T[i, last]
            d *= s
            li *= s
        loss += li
        db += d
        for p in range(lo, hi):
            G_out[indices[p], 0] += data[p] * d
    db_out[0] = db
    return loss


@njit(cache=CACHE, error_model="numpy")
def _block_hess1(kind, data, indices, indptr, W, b, V, vb, start, stop, H_out, hb_out, T,
                 weighted, Q, mode):
    """:func:`_block_hess` for one output on scalars (same operations and order)."""
    b0, v0 = b[0], vb[0]
    hb = hb_out[0]
    last = T.shape[1] - 1
    for i in range(start, stop):
        lo, hi = indptr[i], indptr[i + 1]
        u = v0
        if mode == CURV_USE:
            for p in range(lo, hi):
                u += data[p] * V[indices[p], 0]
            q = Q[i, 0]
        else:
            z = b0
            for p in range(lo, hi):
                x = data[p]
                j = indices[p]
                z += x * W[j, 0]
                u += x * V[j, 0]
            if kind == LINEAR:
                q = 2.0
            else:
                e = math.exp(-abs(z))
                q = e / ((1.0 + e) * (1.0 + e))
            if mode == CURV_STORE:
                Q[i, 0] = q
        u *= q
        if weighted:
            u *= T[i, last]
        hb += u
        for p in range(lo, hi):
            H_out[indices[p], 0] += data[p] * u
    hb_out[0] = hb


@njit(cache=CACHE, error_model="numpy")
def _block_grad(kind, data, indices, indptr, T, W, b, start, stop, G_out, db_out, weighted):
    m = W.shape[1]
    if m == 1 and kind != SOFTMAX:
        return _block_grad1(kind, data, indices, indptr, T, W, b, start, stop, G_out, db_out,
                            weighted)
    z = np.empty(m)
    d = np.empty(m)
    loss = 0.0
    for i in range(start, stop):
        lo, hi = indptr[i], indptr[i + 1]
        _row_logits(data, indices, lo, hi, W, b, z)
        loss += _row_loss_dz(kind, z, T, i, d, weighted)
        for c in range(m):
            db_out[c] += d[c]
        _scatter(data, indices, lo, hi, d, G_out)
    return loss


@njit(cache=CACHE, error_model="numpy")
def _block_hess(kind, data, indices, indptr, W, b, V, vb, start, stop, H_out, hb_out, T,
                weighted, Q, mode):
    """Hessian products of rows ``start:stop`` scattered into ``H_out``; ``mode`` CURV_STORE
    also keeps each row's :func:`_row_curv` in ``Q`` (n, m), CURV_USE takes it from there
    instead of the logits at (W, b) (the same numbers: the same bits)."""
    m = W.shape[1]
    if m == 1 and kind != SOFTMAX:
        _block_hess1(kind, data, indices, indptr, W, b, V, vb, start, stop, H_out, hb_out, T,
                     weighted, Q, mode)
        return
    z = np.empty(m)
    u = np.empty(m)
    for i in range(start, stop):
        lo, hi = indptr[i], indptr[i + 1]
        _row_logits(data, indices, lo, hi, V, vb, u)
        if mode == CURV_USE:
            _row_hess_curv(kind, Q[i], u)
        else:
            _row_logits(data, indices, lo, hi, W, b, z)
            _row_curv(kind, z)
            if mode == CURV_STORE:
                for c in range(m):
                    Q[i, c] = z[c]
            _row_hess_curv(kind, z, u)
        _row_weighted(u, T, i, weighted)
        for c in range(m):
            hb_out[c] += u[c]
        _scatter(data, indices, lo, hi, u, H_out)


@njit(cache=CACHE)
def _combine(part_G, part_b, scale, G_out, gb_out):
    """``G_out = scale * sum of the blocks' partials``, added in block order."""
    G_out[:] = part_G[0]
    for ib in range(1, part_G.shape[0]):
        G_out += part_G[ib]
    G_out *= scale
    gb_out[:] = part_b[0]
    for ib in range(1, part_b.shape[0]):
        gb_out += part_b[ib]
    gb_out *= scale


@njit(cache=CACHE, parallel=True)
def _grad_partials(kind, data, indices, indptr, T, W, b, G_out, gb_out, nb, scale, weighted):
    n = indptr.shape[0] - 1
    k, m = W.shape
    block = (n + nb - 1) // nb
    part_G = np.zeros((nb, k, m))
    part_b = np.zeros((nb, m))
    part_l = np.zeros(nb)
    for ib in prange(nb):
        start = ib * block
        part_l[ib] = _block_grad(kind, data, indices, indptr, T, W, b, start,
                                 min(n, start + block), part_G[ib], part_b[ib], weighted)
    _combine(part_G, part_b, scale, G_out, gb_out)
    loss = 0.0
    for ib in range(nb):
        loss += part_l[ib]
    return loss * scale


@njit(cache=CACHE, parallel=True)
def _hess_partials(kind, data, indices, indptr, W, b, V, vb, H_out, hb_out, nb, scale, T,
                   weighted, Q, mode):
    n = indptr.shape[0] - 1
    k, m = W.shape
    block = (n + nb - 1) // nb
    part_H = np.zeros((nb, k, m))
    part_b = np.zeros((nb, m))
    for ib in prange(nb):
        start = ib * block
        _block_hess(kind, data, indices, indptr, W, b, V, vb, start, min(n, start + block),
                    part_H[ib], part_b[ib], T, weighted, Q, mode)
    _combine(part_H, part_b, scale, H_out, hb_out)


@njit(cache=CACHE, parallel=True)
def _decision(data, indices, indptr, W, b, Z_out):
    for i in prange(indptr.shape[0] - 1):
        _row_logits(data, indices, indptr[i], indptr[i + 1], W, b, Z_out[i])


# --------------------------------------------------------------------------- column pass
@njit(cache=CACHE, error_model="numpy")
def _cols_xtd(cdata, crows, colptr, first, last, D, scale, G_out):
    m = D.shape[1]
    for j in range(first, last):
        for c in range(m):
            G_out[j, c] = 0.0
        for p in range(colptr[j], colptr[j + 1]):
            x = cdata[p]
            r = crows[p]
            for c in range(m):
                G_out[j, c] += x * D[r, c]
        for c in range(m):
            G_out[j, c] *= scale


@njit(cache=CACHE, parallel=True)
def _xtd(cdata, crows, colptr, tasks, D, scale, G_out):
    """``G_out (k, m) = scale * X^T D``: each column summed over its rows in row order."""
    for t in prange(tasks.shape[0] - 1):
        _cols_xtd(cdata, crows, colptr, tasks[t], tasks[t + 1], D, scale, G_out)


@njit(cache=CACHE, error_model="numpy")
def _cols_gram(data, indices, indptr, cdata, crows, colptr, first, last, s, T, A_out, C_out):
    k = colptr.shape[0] - 1
    m = T.shape[1]
    for j in range(first, last):
        for p in range(colptr[j], colptr[j + 1]):
            r = crows[p]
            x = cdata[p] * s[r]
            for q in range(indptr[r], indptr[r + 1]):
                A_out[j, indices[q]] += x * data[q]
            A_out[j, k] += x
            for c in range(m):
                C_out[j, c] += x * T[r, c]


@njit(cache=CACHE, parallel=True)
def _gram(data, indices, indptr, cdata, crows, colptr, tasks, s, T, A_out, C_out):
    """Rows j < k of ``[X 1]^T diag(s) [X 1]`` and ``[X 1]^T diag(s) T``, one column each."""
    for t in prange(tasks.shape[0] - 1):
        _cols_gram(data, indices, indptr, cdata, crows, colptr, tasks[t], tasks[t + 1], s, T,
                   A_out, C_out)


# --------------------------------------------------------------------------- public wrappers
def column_tasks(colptr, n_tasks=COLUMN_TASKS):
    """Boundaries (n_tasks' + 1,) of column ranges holding about equal non-zeros each."""
    k = colptr.shape[0] - 1
    nnz = int(colptr[-1])
    targets = np.linspace(0, nnz, min(n_tasks, max(k, 1)) + 1)[1:-1]
    inner = np.searchsorted(colptr, targets, side="left")
    return np.unique(np.concatenate([[0], np.clip(inner, 0, k), [k]])).astype(np.int64)


def csc_of(data, indices, indptr, n_features):
    """The CSC arrays ``(cdata, crows, colptr, tasks)`` of the CSR matrix (one copy of X, made
    once per objective): rows sorted within each column, so column sums run in row order."""
    import scipy.sparse as sp  # lazy: only this helper needs scipy

    n = indptr.shape[0] - 1
    Xc = sp.csr_matrix((data, indices, indptr), shape=(n, n_features)).tocsc()
    Xc.sort_indices()
    return Xc.data, Xc.indices, Xc.indptr, column_tasks(Xc.indptr)


def _ready(W, b, k):
    W = np.ascontiguousarray(W, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != k or b.shape != (W.shape[1],):
        raise ValueError(f"W must be (k, m) = ({k}, m) and b (m,); got {W.shape}, {b.shape}")
    return W, b


def loss_grad(kind, csr, csc, T, W, b, G_out, gb_out, D_out=None, block=BLOCK_ROWS, mean=True,
              weighted=False):
    """Mean loss over rows; ``G_out`` (k, m) = dL/dW, ``gb_out`` (m,) = dL/db.

    ``csr`` = (data, indices, indptr); ``csc`` = :func:`csc_of` of it for the column pass, or
    None for per-block partials (``block`` is then ``n / PARTIAL_BLOCKS`` rows). ``D_out``
    (n, m) float64: the column pass's scratch for the per-row derivatives (allocated when
    None). ``mean=False``: sums over rows instead, as in ``kernels.loss_grad``; ``weighted``:
    T's last column holds the row weights, as there.
    """
    data, indices, indptr = csr
    n = indptr.shape[0] - 1
    W, b = _ready(W, b, G_out.shape[0])
    scale = 1.0 / n if mean else 1.0
    if csc is None:
        nb = min(PARTIAL_BLOCKS, max(n, 1)) if block == BLOCK_ROWS else (n + block - 1) // block
        return _grad_partials(kind, data, indices, indptr, T, W, b, G_out, gb_out, nb, scale,
                              weighted)
    if D_out is None:
        D_out = np.empty((n, W.shape[1]))
    loss = _rows_dz(kind, data, indices, indptr, T, W, b, D_out, gb_out, block, weighted)
    gb_out *= scale
    _xtd(csc[0], csc[1], csc[2], csc[3], D_out, scale, G_out)
    return loss * scale


def hessp(kind, csr, csc, W, b, V, vb, H_out, hb_out, U_out=None, block=BLOCK_ROWS, mean=True,
          T=None, weighted=False, curv=None, curv_mode=CURV_NONE):
    """Hessian of the mean loss at (W, b) applied to (V, vb), into ``H_out``, ``hb_out``
    (``csc``, ``U_out``, ``block``, ``T``'s weights as in :func:`loss_grad`).

    ``curv`` (n, m) float64 with ``curv_mode``, per-block partials only: CURV_STORE keeps
    each row's curvature at (W, b) there, CURV_USE reads it back instead of recomputing the
    logits (the caller vouches that (W, b) is the same): CG's products at one point then cost
    one sparse product and one scatter, not two and a scatter, with the same bits.
    """
    T = _NO_TARGETS if T is None else T
    data, indices, indptr = csr
    n = indptr.shape[0] - 1
    W, b = _ready(W, b, H_out.shape[0])
    V, vb = _ready(V, vb, H_out.shape[0])
    scale = 1.0 / n if mean else 1.0
    if csc is None:
        nb = min(PARTIAL_BLOCKS, max(n, 1)) if block == BLOCK_ROWS else (n + block - 1) // block
        if curv is None:
            curv, curv_mode = _NO_CURV, CURV_NONE
        elif curv.shape != (n, W.shape[1]):
            raise ValueError(f"curv must be (n, m) = ({n}, {W.shape[1]}); got {curv.shape}")
        _hess_partials(kind, data, indices, indptr, W, b, V, vb, H_out, hb_out, nb, scale, T,
                       weighted, curv, curv_mode)
        return
    if U_out is None:
        U_out = np.empty((n, W.shape[1]))
    _rows_hz(kind, data, indices, indptr, W, b, V, vb, U_out, hb_out, block, T, weighted)
    hb_out *= scale
    _xtd(csc[0], csc[1], csc[2], csc[3], U_out, scale, H_out)


def decision_function(csr, W, b, n_features, Z_out=None):
    """Logits ``Z = X W + b`` (n, m), in parallel over rows."""
    data, indices, indptr = csr
    W, b = _ready(W, b, n_features)
    if Z_out is None:
        Z_out = np.empty((indptr.shape[0] - 1, W.shape[1]))
    _decision(data, indices, indptr, W, b, Z_out)
    return Z_out


def gram(csr, csc, T, weights=None, mean=True):
    """``A = [X 1]^T diag(s) [X 1]`` (k+1, k+1) and ``C = [X 1]^T diag(s) T`` (k+1, m), dense.

    ``weights`` s (n,) (None: ones, the plain Gram). Only for k up to ``GRAM_MAX_FEATURES``.
    Each column j of X owns row j of A (its products with every row holding it, in row
    order); the bias row is the bias column, so A is exactly symmetric.
    """
    data, indices, indptr = csr
    n = indptr.shape[0] - 1
    k = csc[2].shape[0] - 1
    if k > GRAM_MAX_FEATURES:
        raise ValueError(f"a dense Gram of {k} + 1 columns is too large for a sparse X "
                         f"(at most {GRAM_MAX_FEATURES} features)")
    s = np.ones(n) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    T = np.ascontiguousarray(T, dtype=np.float64)
    A = np.zeros((k + 1, k + 1))
    C = np.zeros((k + 1, T.shape[1]))
    _gram(data, indices, indptr, csc[0], csc[1], csc[2], csc[3], s, T, A, C)
    A[k, :k] = A[:k, k]
    A[k, k] = math.fsum(s) if weights is not None else float(n)
    C[k] = _weighted_column_sums(s, T)
    A = np.triu(A) + np.triu(A, 1).T  # the upper triangle mirrored: exactly symmetric
    if mean:
        A /= n
        C /= n
    return A, C


@njit(cache=CACHE)
def _column_sums(data, indices, w, k):
    s1 = np.zeros(k)
    s2 = np.zeros(k)
    for p in range(data.shape[0]):
        j = indices[p]
        s1[j] += w[p]
        s2[j] += w[p] * data[p]
    return s1, s2


def column_sums(data, indices, w, n_features):
    """``(sum_p w_p, sum_p w_p x_p)`` per column over the stored entries (k,) each, in stored
    order: ``np.bincount``'s sums (the same additions in the same order, so the same bits) in
    one serial sweep instead of two (``data`` and ``w`` float64)."""
    return _column_sums(data, indices, w, n_features)


@njit(cache=CACHE)
def _weighted_column_sums(s, T):
    out = np.zeros(T.shape[1])
    for r in range(T.shape[0]):
        for c in range(T.shape[1]):
            out[c] += s[r] * T[r, c]
    return out
