"""Linear regression without iterating over the data: the normal equations, and coordinate
descent on the Gram matrix (the lecture asks whether gradient descent is needed at all).

Both read X once to form ``A = [X 1]^T [X 1] / n`` and ``C = [X 1]^T Y / n``; after that the
work is independent of n.
"""

from __future__ import annotations

import numpy as np

import kernels
from kernels.gram import blas_single_thread

from ._problem import FitResult, Problem


def _gram(P: Problem):
    P.obj.n_passes += 1
    return kernels.gram(P.obj.X, P.obj.T)


def _penalised_system(A: np.ndarray, a2: float) -> np.ndarray:
    """A + a2 I on the weights (the bias stays unpenalised)."""
    M = A.copy()
    k = A.shape[0] - 1
    M[np.arange(k), np.arange(k)] += a2
    return M


def closed_form(P: Problem, W, b, **_) -> FitResult:
    """Solve (A + a2 I_w) theta = C, then one refinement step with the exact residual gradient.

    Singular systems (collinear columns, no penalty) get the minimum-norm least-squares solution.
    """
    A, C = _gram(P)
    M = _penalised_system(A, P.pen.a2)
    with blas_single_thread():
        theta = np.linalg.lstsq(M, C, rcond=None)[0]
    k = A.shape[0] - 1
    W, b = np.ascontiguousarray(theta[:k]), theta[k].copy()
    G, gb = np.empty_like(W), np.empty_like(b)
    P.f_grad(W, b, G, gb)
    # grad f = 2 (M theta - C): one Newton step on the exact gradient fixes the Gram's rounding.
    with blas_single_thread():
        corr = np.linalg.lstsq(M, 0.5 * np.vstack([G, gb]), rcond=None)[0]
    W, b = np.ascontiguousarray(W - corr[:k]), b - corr[k]
    f = P.f_grad(W, b, G, gb)
    P.record(f, W, b)
    return P.result("closed_form", W, b, 1, True, "exact")


def cd(P: Problem, W, b, **_) -> FitResult:
    """Cyclic coordinate descent with soft-thresholding on the Gram (covariance updates)."""
    A, C = _gram(P)
    W, b = W.copy(), b.copy()
    sweeps = kernels.cd_gram(A, C, W, b, P.pen.a1, P.pen.a2, 1e-3 * P.tol, P.max_iter)
    G, gb = np.empty_like(W), np.empty_like(b)
    f = P.f_grad(W, b, G, gb)
    P.record(P.F_from_f(f, W), W, b)
    residual = max(P.pen.subgrad_residual(W, G), float(np.abs(gb).max()))
    converged = residual <= max(P.tol, 1e-9)
    return P.result("cd", W, b, int(sweeps), converged,
                    "subgradient" if converged else "max_iter")
