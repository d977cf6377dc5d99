"""Gram matrices of ``[X 1]`` in one deterministic pass (for closed form and coordinate descent).

Each fixed block of rows adds its ``X_b^T X_b`` (a single-threaded BLAS product on a row slice)
into its own partial; the partials are summed in block order, so the result does not depend on
the number of threads.
"""

import math

import numpy as np
from numba import njit, prange
from threadpoolctl import ThreadpoolController

from ._config import CACHE

GRAM_BLOCK_ROWS = 8192
_BLAS: list[ThreadpoolController] = []


def blas_single_thread():
    """Context manager: BLAS on one thread (inside parallel numba code, and for the tiny
    (k+1)^2 systems, where a BLAS thread pool only adds hand-off latency).

    The controller is found once (a fresh ``threadpool_limits`` scans the loaded libraries on
    every call), after loading scipy's BLAS, which numba's ``np.dot`` calls.
    """
    if not _BLAS:
        import scipy.linalg.cython_blas  # noqa: F401

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


@njit(cache=CACHE, parallel=True)
def _gram(X, T, block):
    n, k = X.shape
    m = T.shape[1]
    nb = (n + block - 1) // block
    part_A = np.zeros((nb, k + 1, k + 1))
    part_C = np.zeros((nb, k + 1, m))
    for ib in prange(nb):
        lo = ib * block
        hi = min(n, lo + block)
        Xb = np.ascontiguousarray(X[lo:hi]).astype(np.float64)
        Tb = np.ascontiguousarray(T[lo:hi])
        part_A[ib, :k, :k] = np.dot(Xb.T, Xb)
        part_C[ib, :k, :] = np.dot(Xb.T, Tb)
        for j in range(k):
            part_A[ib, k, j] = Xb[:, j].sum()
        part_A[ib, k, k] = hi - lo
        for c in range(m):
            part_C[ib, k, c] = Tb[:, c].sum()
    A = np.zeros((k + 1, k + 1))
    C = np.zeros((k + 1, m))
    for ib in range(nb):
        A += part_A[ib]
        C += part_C[ib]
    for j in range(k):
        A[j, k] = A[k, j]
    return A, C


def gram(X, T, block=GRAM_BLOCK_ROWS, mean=True):
    """``A = [X 1]^T [X 1] / n`` (k+1, k+1) and ``C = [X 1]^T T / n`` (k+1, m), float64
    (``mean=False``: the sums, without ``/ n``, for one chunk of a larger data set)."""
    with blas_single_thread():
        A, C = _gram(X, np.ascontiguousarray(T, dtype=np.float64), block)
    n = X.shape[0]
    return (A / n, C / n) if mean else (A, C)


@njit(cache=CACHE, parallel=True)
def _logistic_hessian(X, w, b, block):
    n, k = X.shape
    nb = (n + block - 1) // block
    part = np.zeros((nb, k + 1, k + 1))
    for ib in prange(nb):
        lo = ib * block
        hi = min(n, lo + block)
        Xb = np.ascontiguousarray(X[lo:hi]).astype(np.float64)
        z = np.dot(Xb, w) + b
        d = np.empty(hi - lo)
        for i in range(hi - lo):
            e = math.exp(-abs(z[i]))
            d[i] = e / ((1.0 + e) * (1.0 + e))  # sigma(z) (1 - sigma(z)), stable for any z
        Xd = Xb * d.reshape(-1, 1)
        part[ib, :k, :k] = np.dot(Xd.T, Xb)
        for j in range(k):
            part[ib, k, j] = Xd[:, j].sum()
        part[ib, k, k] = d.sum()
    H = np.zeros((k + 1, k + 1))
    for ib in range(nb):
        H += part[ib]
    for j in range(k):
        H[j, k] = H[k, j]
    return H


def logistic_hessian(X, w, b, block=GRAM_BLOCK_ROWS, mean=True):
    """``[X 1]^T diag(sigma'(z)) [X 1] / n`` (k+1, k+1) at ``z = X w + b``, deterministic
    (``mean=False``: the sum, without ``/ n``)."""
    with blas_single_thread():
        H = _logistic_hessian(X, np.ascontiguousarray(w, dtype=np.float64), float(b), block)
    return H / X.shape[0] if mean else H


@njit(cache=CACHE)
def cd_gram(A, C, W_out, b_out, a1, a2, tol, max_sweeps):
    """Coordinate descent for ``theta^T A theta - 2 theta^T C + a1|w|_1 + a2|w|^2`` per output.

    ``theta = (w, b)``: the last coordinate is the unpenalised bias. Covariance updates on the
    Gram (no pass over X). Returns the number of sweeps; stops when no coordinate of any output
    moves by more than ``tol`` (relative to the largest weight).
    """
    k = A.shape[0] - 1
    m = C.shape[1]
    sweeps = 0
    for c in range(m):
        q = np.zeros(k + 1)  # q = A theta
        for j in range(k):
            if W_out[j, c] != 0.0:
                q += A[:, j] * W_out[j, c]
        q += A[:, k] * b_out[c]
        for sweep in range(max_sweeps):
            max_delta = 0.0
            max_w = 0.0
            for j in range(k + 1):
                old = W_out[j, c] if j < k else b_out[c]
                rho = C[j, c] - q[j] + A[j, j] * old
                if j < k:
                    if rho > 0.5 * a1:
                        new = (rho - 0.5 * a1) / (A[j, j] + a2)
                    elif rho < -0.5 * a1:
                        new = (rho + 0.5 * a1) / (A[j, j] + a2)
                    else:
                        new = 0.0
                    W_out[j, c] = new
                else:
                    new = rho / A[j, j]
                    b_out[c] = new
                delta = new - old
                if delta != 0.0:
                    q += A[:, j] * delta
                max_delta = max(max_delta, abs(delta))
                max_w = max(max_w, abs(new))
            sweeps = max(sweeps, sweep + 1)
            if max_delta <= tol * max(1.0, max_w):
                break
    return sweeps
