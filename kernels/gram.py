"""Gram matrices of ``[X 1]`` in one deterministic pass (for closed form and coordinate descent).

``gram`` and ``logistic_hessian`` add, block of rows after block, ``(diag(s) [X 1])^T [X 1]``
(s the row weights, or the rows' logistic curvatures): one BLAS ``gemm`` per block, in block
order, at one thread. OpenBLAS picks its kernels (and so its summation order) per CPU unless
told: ``pipeline._portable`` pins ``OPENBLAS_CORETYPE=Haswell``, so these bits are the same on
every CPU of the supported kind (``tests/test_portable_bits.py``) and for any thread count of
the caller. They replaced fixed-order numba loops (four rows at a time into each entry in a
fixed chain of fused multiply-adds) that were 3-6x slower.
"""

import numpy as np
from numba import njit, prange
from threadpoolctl import ThreadpoolController

from ._config import CACHE
from ._intrinsics import row_dot
from .losses import _NO_TARGETS, _exp_neg

_BLAS: list[ThreadpoolController] = []


def blas_single_thread():
    """Context manager: BLAS on one thread (for the solvers' tiny (k+1)^2 systems, where a
    BLAS thread pool only adds hand-off latency).

    The controller is found once (a fresh ``threadpool_limits`` scans the loaded libraries on
    every call), after loading scipy's BLAS.
    """
    if not _BLAS:
        import scipy.linalg.cython_blas  # noqa: F401

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


BLAS_BLOCK_ROWS = 2048  # rows of the block copies per BLAS product: 2048 (k+1) float64 each


def gram(X, T, block=BLAS_BLOCK_ROWS, mean=True, weighted=False):
    """``A = [X 1]^T [X 1] / n`` (k+1, k+1) and ``C = [X 1]^T T / n`` (k+1, m), float64
    (``mean=False``: the sums, without ``/ n``, for one chunk of a larger data set).

    ``weighted``: T's last column holds row weights s, and the sums are ``[X 1]^T diag(s)
    [X 1]`` and ``[X 1]^T diag(s) T[:, :-1]`` (divided by n with ``mean``, as the kernels'
    means are; a weighted mean divides the sums by sum(s)).

    Each block of rows adds ``(diag(s) [X 1])^T [X 1]`` and ``(diag(s) [X 1])^T T``, BLAS
    ``gemm`` at one thread on the pinned OpenBLAS kernel, in block order (``_blocked``): at
    16000 x 100 it took 10 against 66 ms for the fixed-order loops it replaced. A copy of the
    block stands in for diag(1) [X 1] without weights, so that weights of 1 give the same
    ``gemm`` and the same bits.
    """
    T = np.ascontiguousarray(T, dtype=np.float64)
    if weighted and T.shape[0] != X.shape[0]:
        raise ValueError(f"weighted=True needs T with {X.shape[0]} rows; got {T.shape}")
    s = T[:, -1] if weighted else None
    A, C = _blocked(X, s, T[:, :-1] if weighted else T, block)
    n = X.shape[0]
    return (A / n, C / n) if mean else (A, C)


def _blocked(X, s, T, block: int):
    """``sum over row blocks of (diag(s) [X 1])^T [X 1]`` and ``... ^T T`` (s None: ones;
    T None: no second product, C None)."""
    n, k = X.shape
    A = np.zeros((k + 1, k + 1))
    C = None if T is None else np.zeros((k + 1, T.shape[1]))
    rows = min(block, max(n, 1))
    Xa, Sa = np.empty((rows, k + 1)), np.empty((rows, k + 1))
    Xa[:, k] = 1.0
    with blas_single_thread():
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            Xb, Sb = Xa[:hi - lo], Sa[:hi - lo]
            Xb[:, :k] = X[lo:hi]
            if s is None:
                Sb[:] = Xb
            else:
                np.multiply(Xb, s[lo:hi, None], out=Sb)
            A += Sb.T @ Xb
            if C is not None:
                C += Sb.T @ T[lo:hi]
    return np.triu(A) + np.triu(A, 1).T, C  # A exactly symmetric


@njit(cache=CACHE, error_model="numpy")
def _sigma_prime(z):
    e = _exp_neg(abs(z))
    return e / ((1.0 + e) * (1.0 + e))  # sigma(z) (1 - sigma(z)), stable for any z


@njit(cache=CACHE, parallel=True, error_model="numpy")
def _curvature(X, w2, b, T, weighted, out):
    """``out[i] = s_i sigma'(z_i)`` at ``z = X w + b`` (s_i = 1 without weights); each row on
    its own, so any thread count gives the same bits."""
    wc = T.shape[1] - 1
    for i in prange(X.shape[0]):
        d = _sigma_prime(b + row_dot(X, i, w2, 0))
        out[i] = d * T[i, wc] if weighted else d


def logistic_hessian(X, w, b, block=BLAS_BLOCK_ROWS, mean=True, T=None, weighted=False):
    """``[X 1]^T diag(sigma'(z)) [X 1] / n`` (k+1, k+1) at ``z = X w + b``, deterministic
    (``mean=False``: the sum, without ``/ n``; ``weighted``: diag(s sigma'(z)) with s the
    last column of ``T``).

    The curvatures d come from the kernels' own logits and exp (``_curvature``); then each
    block of rows adds ``(diag(d) [X 1])^T [X 1]``, one BLAS ``gemm``, in block order (not a
    ``syrk`` of ``diag(sqrt d) [X 1]``, 30% faster but inexact under a weight of 2). At
    8192 x 100 that took 5-8 against 26 ms for the fixed-order loops it replaced, the cost of
    every proximal Newton step. Its bits are those
    of the pinned OpenBLAS kernel (``OPENBLAS_CORETYPE``, ``pipeline._portable``) at one thread
    (``blas_single_thread``): the same on every CPU of the supported kind
    (``tests/test_portable_bits.py``).
    """
    w2 = np.ascontiguousarray(w, dtype=np.float64).reshape(1, -1)
    T = _NO_TARGETS if T is None else np.ascontiguousarray(T, dtype=np.float64)
    n, k = X.shape
    if weighted and T.shape[0] != n:
        raise ValueError(f"weighted=True needs T with {n} rows; got {T.shape}")
    d = np.empty(n)
    _curvature(X, w2, float(b), T, weighted, d)
    H = _blocked(X, d, None, block)[0]
    return H / n if mean else H


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
