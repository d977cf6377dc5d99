"""Linear regression without iterating over the data: the normal equations, and coordinate
descent on the Gram matrix (the lecture asks whether gradient descent is needed at all).

Both read X once to form ``A = [X 1]^T [X 1] / n`` and ``C = [X 1]^T Y / n``; after that the
work is independent of n.
"""

from __future__ import annotations

import numpy as np

import kernels
from kernels.gram import blas_single_thread

from ._problem import FitResult, NonFiniteError, Problem
from ._scaling import centring, gram_affine


def _gram(P: Problem):
    A, C = P.obj.gram()
    if not (np.isfinite(A).all() and np.isfinite(C).all()):
        raise NonFiniteError(P._non_finite_message(np.inf, "in the Gram matrix [X 1]^T [X 1]"))
    return A, C


def _penalised_system(A: np.ndarray, a2: float) -> np.ndarray:
    """A + a2 I on the weights (the bias stays unpenalised)."""
    M = A.copy()
    k = A.shape[0] - 1
    M[np.arange(k), np.arange(k)] += a2
    return M


def _to_theta(W, b) -> np.ndarray:
    return np.vstack([W, b[None, :]])


def _from_theta(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(theta[:-1]), theta[-1].copy()


MAX_REFINE = 10  # exact-gradient corrections after the Gram solve (one pass each)


def closed_form(P: Problem, W, b) -> FitResult:
    """Solve (A + a2 I_w) theta = C, then correct with the exact residual gradient.

    The system is solved in centred and scaled coordinates (``_scaling``), where its condition
    is that of standardised data; the Gram of unstandardised columns still loses digits when it
    is formed (large means), so Newton corrections on the exact gradient (one pass each, most
    often one) follow until the gradient's max-norm is below tol or stops shrinking. Singular
    systems (collinear columns, no penalty) get the minimum-norm least-squares solution.
    """
    A, C = _gram(P)
    J = gram_affine(A, P.pen.a2).matrix()
    M = J.T @ _penalised_system(A, P.pen.a2) @ J
    with blas_single_thread():
        theta = J @ np.linalg.lstsq(M, J.T @ C, rcond=None)[0]
    W, b = _from_theta(theta)
    G, gb = np.empty_like(W), np.empty_like(b)
    P.f_grad(W, b, G, gb)
    residual, refined = P.residual(W, b, G, gb), 0
    for refined in range(1, MAX_REFINE + 1):
        # grad f = 2 (M theta - C): a Newton step on the exact gradient fixes the Gram's rounding
        with blas_single_thread():
            corr = J @ np.linalg.lstsq(M, 0.5 * (J.T @ np.vstack([G, gb])), rcond=None)[0]
        W_new, b_new = _from_theta(_to_theta(W, b) - corr)
        f = P.f_grad(W_new, b_new, G, gb)
        new_residual = P.residual(W_new, b_new, G, gb)
        if new_residual >= residual and refined > 1:
            break  # rounding level: keep the best point
        W, b, residual = W_new, b_new, new_residual
        P.record(f, W, b)
        if residual <= P.tol:
            return P.result("closed_form", W, b, refined, True, "exact")
    return P.result("closed_form", W, b, refined, True, "machine_precision")


def cd(P: Problem, W, b) -> FitResult:
    """Cyclic coordinate descent with soft-thresholding on the Gram (covariance updates).

    On centred columns (``_scaling``; CD itself does not depend on column scales), each round
    minimises the penalised quadratic model of F (the Gram, or after the first round the exact
    gradient with the Gram as Hessian) by CD, polished on its active set by one linear solve
    when CD is slow (strongly correlated columns); the exact gradient then measures the
    residual. ``max_iter`` bounds the sweeps of all rounds together.
    """
    A, C = _gram(P)
    J = centring(gram_affine(A)).matrix()
    Jinv = J.copy()
    Jinv[-1, :-1] = -J[-1, :-1]  # J = [[I, 0], [-mu^T, 1]]: its inverse, exactly
    Ac, Cc = J.T @ A @ J, J.T @ C
    theta = _to_theta(W, b)
    G, gb = np.empty_like(W), np.empty_like(b)
    sweeps, best = 0, np.inf
    for _ in range(MAX_REFINE + 1):
        Vc, cc = _from_theta(Jinv @ theta)
        sweeps += _gram_lasso(Ac, Cc, Vc, cc, P.pen.a1, P.pen.a2, 1e-3 * P.tol,
                              P.max_iter - sweeps)
        theta_new = J @ _to_theta(Vc, cc)
        W, b = _from_theta(theta_new)
        f = P.f_grad(W, b, G, gb)
        residual = P.residual(W, b, G, gb)
        if residual >= best:
            W, b = _from_theta(theta)
            return P.result("cd", W, b, sweeps, True, "machine_precision")
        theta, best = theta_new, residual
        P.record(P.F_from_f(f, W), W, b)
        if residual <= P.tol:
            return P.result("cd", W, b, sweeps, True, "subgradient")
        if sweeps >= P.max_iter:
            break
        # model of f around theta: the exact loss gradient, the Gram as its Hessian / 2
        g_loss = np.vstack([G - 2.0 * P.pen.a2 * W, gb])
        Cc = J.T @ (A @ theta - 0.5 * g_loss)
    return P.result("cd", W, b, sweeps, False, "max_iter")


def _gram_lasso(A, C, W_out, b_out, a1: float, a2: float, tol: float, budget: int) -> int:
    """Minimise the Gram problem by CD in chunks of sweeps, each slow chunk followed by an
    active-set step (``_polish``); returns the sweeps used (a polish counts as one)."""
    chunk = max(50, A.shape[0] // 10)  # sweeps between polishes (a polish costs ~|S|^3)
    used = 0
    while used < budget:
        n = min(chunk, budget - used)
        done = int(kernels.cd_gram(A, C, W_out, b_out, a1, a2, tol, n))
        used += done
        if done < n or used >= budget:
            break  # CD's own test held, or no budget left
        used += 1
        if _polish(A, C, W_out, b_out, a1, a2):
            break
    return used


def _polish(A, C, W_out, b_out, a1: float, a2: float) -> bool:
    """One active-set step per output; True when every output is then exactly optimal.

    With the support S and signs s of W fixed, the Gram problem is the quadratic whose
    minimiser solves ``(A_SS + a2 I) theta_S = C_S - a1/2 s`` (bias in S, unpenalised). On
    the segment from W to it the objective is that quadratic, and falls, until a weight
    reaches zero: go there (that weight leaves S), or all the way when no sign changes. The
    end is the exact optimum when every other coordinate has ``|C_j - (A theta)_j| <= a1/2``;
    CD then adds the coordinates that violate it. Strongly correlated columns, where CD
    crawls, take a few such steps.
    """
    k = A.shape[0] - 1
    exact = True
    for c in range(C.shape[1]):
        S = np.append(np.flatnonzero(W_out[:, c]) if a1 else np.arange(k), k)
        sign = np.append(np.sign(W_out[S[:-1], c]), 0.0)
        M = A[np.ix_(S, S)].copy()
        M[np.arange(len(S) - 1), np.arange(len(S) - 1)] += a2
        with blas_single_thread():
            try:
                sol = np.linalg.solve(M, C[S, c] - 0.5 * a1 * sign)
            except np.linalg.LinAlgError:
                exact = False
                continue
        old = np.append(W_out[S[:-1], c], b_out[c])
        t = 1.0
        if a1:
            cross = np.flatnonzero(np.sign(sol[:-1]) != sign[:-1])
            if cross.size:  # first zero crossing on the segment old -> sol
                fr = old[cross] / (old[cross] - sol[cross])
                t = float(fr.min())
                exact = False
        theta = np.zeros(k + 1)
        theta[S] = old + t * (sol - old)
        if t < 1.0:
            theta[S[cross[np.argmin(fr)]]] = 0.0
        W_out[:, c], b_out[c] = theta[:k], theta[k]
        rest = np.setdiff1d(np.arange(k), S)
        if rest.size and np.abs(C[rest, c] - A[rest] @ theta).max() > 0.5 * a1 * (1 + 1e-9):
            exact = False
    return exact
