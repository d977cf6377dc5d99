"""Fused loss-and-gradient, Hessian-vector and prediction kernels for the lecture's models.

One pass over ``X`` gives the loss and its gradient: each row's logits ``z = W^T x + b`` are
computed once, turned into the loss term and the row's gradient ``g = dloss/dz``, and ``g x^T``
is added to the block's partial gradient while ``x`` is still in cache.

Conventions (see ``shared/spec/objectives.md``):

- ``X`` (n, k) float64 or float32, C-contiguous; never copied.
- Targets ``T`` (n, m) float64: the values (``linear``), the 0/1 labels (``sigmoid`` kinds:
  ``logistic`` with m = 1, ``multilabel``, one-vs-rest), or the class index in column 0
  (``softmax``, T of shape (n, 1)).
- ``W`` (k, m), ``b`` (m,) float64. The kernels use ``W^T`` (m, k) so that every dot product
  runs over contiguous memory.
- Loss and gradient are means over rows (the 1/n of the spec). Penalties live elsewhere.

Parallelism is over fixed blocks of ``BLOCK_ROWS`` rows; each block writes its own partial sum
and the partials are added in block order, so results are bit-identical for any thread count.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import BLOCK_ROWS, CACHE, FASTMATH

LINEAR = 0
SIGMOID = 1
SOFTMAX = 2
KINDS = {"linear": LINEAR, "logistic": SIGMOID, "multilabel": SIGMOID, "ovr": SIGMOID,
         "softmax": SOFTMAX}


# --------------------------------------------------------------------------- scalar helpers
@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _softplus(t):
    """log(1 + exp(t)) without overflow for any t."""
    if t > 0.0:
        return t + math.log1p(math.exp(-t))
    return math.log1p(math.exp(t))


@njit(cache=CACHE, fastmath=FASTMATH, inline="always")
def _sigmoid(t):
    """1 / (1 + exp(-t)), branching on the sign so exp never overflows."""
    if t >= 0.0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


@njit(cache=CACHE, fastmath=FASTMATH)
def _dot(x, w):
    s = 0.0
    for j in range(x.shape[0]):
        s += x[j] * w[j]
    return s


@njit(cache=CACHE, fastmath=FASTMATH)
def _axpy(a, x, y_out):
    for j in range(x.shape[0]):
        y_out[j] += a * x[j]


@njit(cache=CACHE, fastmath=FASTMATH)
def _logits(x, Wt, b, z_out):
    for c in range(Wt.shape[0]):
        z_out[c] = b[c] + _dot(x, Wt[c])


@njit(cache=CACHE, fastmath=FASTMATH)
def _row_loss_and_dz(kind, z, t):
    """Loss of one row; overwrites the logits ``z`` with dloss/dz (stable forms only)."""
    m = z.shape[0]
    loss = 0.0
    if kind == LINEAR:
        for c in range(m):
            r = z[c] - t[c]
            loss += r * r
            z[c] = 2.0 * r
    elif kind == SIGMOID:
        for c in range(m):
            zc = z[c]
            loss += _softplus(zc) - t[c] * zc
            z[c] = _sigmoid(zc) - t[c]
    else:
        cls = int(t[0])
        zmax = z[0]
        for c in range(1, m):
            zmax = max(zmax, z[c])
        s = 0.0
        for c in range(m):
            s += math.exp(z[c] - zmax)
        loss = zmax + math.log(s) - z[cls]
        for c in range(m):
            z[c] = math.exp(z[c] - zmax) / s
        z[cls] -= 1.0
    return loss


@njit(cache=CACHE, fastmath=FASTMATH)
def _row_hess_dz(kind, z, u):
    """Overwrite ``u`` (= V^T x + vb) with the row's Hessian applied to it (in z-space)."""
    m = z.shape[0]
    if kind == LINEAR:
        for c in range(m):
            u[c] *= 2.0
    elif kind == SIGMOID:
        for c in range(m):
            p = _sigmoid(z[c])
            u[c] *= p * (1.0 - p)
    else:
        zmax = z[0]
        for c in range(1, m):
            zmax = max(zmax, z[c])
        s = 0.0
        for c in range(m):
            z[c] = math.exp(z[c] - zmax)
            s += z[c]
        pu = 0.0
        for c in range(m):
            z[c] /= s
            pu += z[c] * u[c]
        for c in range(m):
            u[c] = z[c] * (u[c] - pu)


# --------------------------------------------------------------------------- row blocks
@njit(cache=CACHE, fastmath=FASTMATH)
def _block_loss_grad(kind, X, T, Wt, b, start, stop, Gt_out, gb_out, z):
    loss = 0.0
    for i in range(start, stop):
        x = X[i]
        _logits(x, Wt, b, z)
        loss += _row_loss_and_dz(kind, z, T[i])
        for c in range(z.shape[0]):
            gb_out[c] += z[c]
            _axpy(z[c], x, Gt_out[c])
    return loss


@njit(cache=CACHE, fastmath=FASTMATH)
def _block_hessp(kind, X, Wt, b, Vt, vb, start, stop, Ht_out, hb_out, z, u):
    for i in range(start, stop):
        x = X[i]
        _logits(x, Wt, b, z)
        _logits(x, Vt, vb, u)
        _row_hess_dz(kind, z, u)
        for c in range(u.shape[0]):
            hb_out[c] += u[c]
            _axpy(u[c], x, Ht_out[c])


@njit(cache=CACHE, parallel=True)
def _combine(part_G, part_b, G_out, gb_out, scale):
    """G_out (k, m) = scale * sum over blocks, added in block order (deterministic)."""
    nb, m, k = part_G.shape
    chunk = 64
    n_chunks = (k + chunk - 1) // chunk
    for ch in prange(n_chunks):
        lo = ch * chunk
        hi = min(k, lo + chunk)
        for c in range(m):
            acc = np.zeros(hi - lo)
            for ib in range(nb):
                for j in range(lo, hi):
                    acc[j - lo] += part_G[ib, c, j]
            for j in range(lo, hi):
                G_out[j, c] = acc[j - lo] * scale
    for c in range(m):
        s = 0.0
        for ib in range(nb):
            s += part_b[ib, c]
        gb_out[c] = s * scale


@njit(cache=CACHE, parallel=True)
def _loss_grad(kind, X, T, Wt, b, G_out, gb_out, block):
    n, k = X.shape
    m = Wt.shape[0]
    nb = (n + block - 1) // block
    part_G = np.zeros((nb, m, k))
    part_b = np.zeros((nb, m))
    part_l = np.zeros(nb)
    for ib in prange(nb):
        z = np.empty(m)
        start = ib * block
        part_l[ib] = _block_loss_grad(kind, X, T, Wt, b, start, min(n, start + block),
                                      part_G[ib], part_b[ib], z)
    _combine(part_G, part_b, G_out, gb_out, 1.0 / n)
    loss = 0.0
    for ib in range(nb):
        loss += part_l[ib]
    return loss / n


@njit(cache=CACHE, parallel=True)
def _hessp(kind, X, Wt, b, Vt, vb, H_out, hb_out, block):
    n, k = X.shape
    m = Wt.shape[0]
    nb = (n + block - 1) // block
    part_H = np.zeros((nb, m, k))
    part_b = np.zeros((nb, m))
    for ib in prange(nb):
        z = np.empty(m)
        u = np.empty(m)
        start = ib * block
        _block_hessp(kind, X, Wt, b, Vt, vb, start, min(n, start + block), part_H[ib],
                     part_b[ib], z, u)
    _combine(part_H, part_b, H_out, hb_out, 1.0 / n)


@njit(cache=CACHE, parallel=True, fastmath=FASTMATH)
def _decision(X, Wt, b, Z_out):
    for i in prange(X.shape[0]):
        _logits(X[i], Wt, b, Z_out[i])


# --------------------------------------------------------------------------- public wrappers
def _check(X, W, b):
    if X.ndim != 2 or not X.flags.c_contiguous or X.dtype not in (np.float32, np.float64):
        raise ValueError("X must be a C-contiguous 2-D float32 or float64 array")
    if W.ndim != 2 or W.shape[0] != X.shape[1] or b.shape != (W.shape[1],):
        raise ValueError(f"W must be (k, m) = ({X.shape[1]}, m) and b (m,); got {W.shape}, "
                         f"{b.shape}")
    return np.ascontiguousarray(W.T, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)


def loss_grad(kind, X, T, W, b, G_out, gb_out, block=BLOCK_ROWS):
    """Mean loss over rows; writes dL/dW into ``G_out`` (k, m) and dL/db into ``gb_out`` (m,).

    ``kind`` is ``LINEAR``, ``SIGMOID`` or ``SOFTMAX``; ``T`` the prepared (n, m) float64 targets
    (the class index in column 0 for softmax).
    """
    Wt, b = _check(X, W, b)
    return _loss_grad(kind, X, T, Wt, b, G_out, gb_out, block)


def hessp(kind, X, W, b, V, vb, H_out, hb_out, block=BLOCK_ROWS):
    """Hessian of the mean loss at (W, b) applied to the direction (V, vb), into the ``_out``s."""
    Wt, b = _check(X, W, b)
    Vt = np.ascontiguousarray(V.T, dtype=np.float64)
    _hessp(kind, X, Wt, b, Vt, np.ascontiguousarray(vb, dtype=np.float64), H_out, hb_out, block)


def decision_function(X, W, b, Z_out=None):
    """Logits ``Z = X W + b`` (n, m), computed in parallel over rows."""
    Wt, b = _check(X, W, b)
    if Z_out is None:
        Z_out = np.empty((X.shape[0], Wt.shape[0]))
    _decision(X, Wt, b, Z_out)
    return Z_out


def _targets_2d(y, dtype=np.float64):
    y = np.asarray(y, dtype=dtype)
    return np.ascontiguousarray(y.reshape(y.shape[0], -1))


def linear_loss_grad(X, Y, W, b, G_out, gb_out):
    """Mean squared error (1/n) sum ||z - y||^2 and its gradient; ``Y`` (n,) or (n, m)."""
    return loss_grad(LINEAR, X, _targets_2d(Y), W, b, G_out, gb_out)


def logistic_loss_grad(X, y, W, b, G_out, gb_out):
    """Binary cross-entropy (softplus(z) - y z, averaged); ``y`` (n,) in {0, 1}, W (k, 1)."""
    return loss_grad(SIGMOID, X, _targets_2d(y), W, b, G_out, gb_out)


def multilabel_loss_grad(X, Y, W, b, G_out, gb_out):
    """Independent sigmoids summed over labels; ``Y`` (n, m) in {0, 1}."""
    return loss_grad(SIGMOID, X, _targets_2d(Y), W, b, G_out, gb_out)


def softmax_loss_grad(X, y, W, b, G_out, gb_out):
    """Softmax cross-entropy lse(z) - z_y averaged; ``y`` (n,) class indices in 0..m-1."""
    return loss_grad(SOFTMAX, X, _targets_2d(y), W, b, G_out, gb_out)


# --------------------------------------------------------------------------- bandwidth probe
@njit(cache=CACHE, fastmath=FASTMATH)
def _block_sum(X, start, stop):
    acc = np.zeros(X.shape[1])
    for i in range(start, stop):
        x = X[i]
        for j in range(x.shape[0]):
            acc[j] += x[j]
    return acc.sum()


@njit(cache=CACHE, parallel=True)
def _read_sum(X, block):
    n = X.shape[0]
    nb = (n + block - 1) // block
    part = np.zeros(nb)
    for ib in prange(nb):
        part[ib] = _block_sum(X, ib * block, min(n, ib * block + block))
    return part.sum()


def read_sum(X, block=BLOCK_ROWS):
    """Sum of X in one parallel blocked read: the memory-bandwidth floor of a pass over X."""
    return _read_sum(X, block)
