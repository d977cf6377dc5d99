"""Proximal Newton with a subsampled Hessian, for one-output logistic regression (l1, l2, none).

Each iteration makes one full pass (the fused loss-and-gradient kernel) and forms the Hessian
``H = [X 1]^T diag(sigma'(z)) [X 1] / s + 2 a2 I_w`` on a fixed random sample of ``s`` rows
(all rows when n <= s: exact proximal Newton). The L1-penalised quadratic model is minimised
exactly by coordinate descent on ``H`` (``kernels.cd_gram``, as for the Lasso), then a
backtracking (Armijo) search on F. The (k+1)^2 Hessian costs a BLAS product over the sample,
independent of n, so at large n an iteration costs about one pass, and a handful of iterations
reach 1e-6 where first-order methods need tens to hundreds of passes (see bench/solvers.py).
It stops when the max-norm of the minimal subgradient of F falls below ``tol``.
"""

from __future__ import annotations

import numpy as np

import kernels

from ..objectives import Objective
from ._problem import FitResult, Problem
from ._scaling import centring, gram_affine

# Hessian sample: n / 16 rows, at least 8192 and at most 32768 (all rows below 8192).
SAMPLE_ROWS = (8192, 32_768)


def _hessian(rows: Objective, w: np.ndarray, b: float, a2: float) -> np.ndarray:
    """[Xs 1]^T D [Xs 1] / s + 2 a2 I_w on the rows Xs of ``rows``, D = sigma(z)(1 - sigma(z)),
    as a (k+1, k+1) array."""
    k = rows.n_features
    H = rows.logistic_hessian(w, b)
    H[np.arange(k), np.arange(k)] += 2.0 * a2
    return H


def prox_newton(P: Problem, W, b, *, sample: int | None = None,
                max_sweeps: int = 1000) -> FitResult:
    """Minimise F by subsampled proximal Newton: the (k+1)^2 Hessian and coordinate descent
    for ``model='logistic'``, Hessian-vector products and FISTA (``prox_newton_hvp``) for the
    models with several outputs."""
    if P.obj.model != "logistic" or W.shape[1] != 1:  # several outputs: Hessian products
        from .prox_newton_hvp import prox_newton_hvp

        return prox_newton_hvp(P, W, b, sample=sample)
    obj, pen = P.obj, P.pen
    n = obj.n_samples
    if sample is None:
        sample = min(max(n // 16, SAMPLE_ROWS[0]), SAMPLE_ROWS[1])
    rng = np.random.default_rng(P.seed)
    full = n <= sample
    rows: Objective = obj if full else obj.sample(np.sort(rng.choice(n, sample, replace=False)))
    a1 = pen.a1
    W, b = W.copy(), b.copy()
    G, gb = np.empty_like(W), np.empty_like(b)
    f = P.f_grad(W, b, G, gb)
    F = P.F_from_f(f, W)
    stalled = 0
    last_residual = best = np.inf
    best_it, fresh = 0, True
    H = np.empty(0)
    for it in range(1, P.max_iter + 1):
        residual = P.residual(W, b, G, gb)
        if residual <= P.tol:
            return _done(P, W, b, it - 1, True, "subgradient")
        if residual < 0.5 * best:
            best, best_it = residual, it
        elif not full and it - best_it >= 10:  # the sample misjudges the curvature: all rows
            full, rows, fresh, best_it = True, obj, True, it
        # A fresh Hessian while the last one did not shrink the residual tenfold; else the last
        # one again (near the optimum the curvature barely moves).
        if it <= 2 or fresh or residual > 0.1 * last_residual:
            fresh = False
            H = _hessian(rows, W[:, 0], float(b[0]), pen.a2)
        last_residual = residual
        Wn, bn = _model_minimiser(H, W, b, G, gb, a1, max(1e-15, 1e-4 * residual), max_sweeps)
        decrease = float(np.vdot(G, Wn - W) + np.vdot(gb, bn - b))
        if a1:
            decrease += a1 * float(np.abs(Wn).sum() - np.abs(W).sum())
        # Below F's rounding the function values cannot judge a step: take the Newton step and
        # let the subgradient residual (still meaningful there) decide when to stop.
        exact = -decrease <= 1e-12 * abs(F)
        W_t, b_t, F_t, G_new, gb_new = _line_search(P, W, b, Wn - W, bn - b, F, decrease, exact)
        stalled = stalled + 1 if exact else 0
        if ((not exact and F_t > F) or stalled > 8
                or (exact and P.residual(W_t, b_t, G_new, gb_new) >= residual)):
            if not full:  # the sample may be what stops progress: go on with all rows
                full, rows, fresh, stalled = True, obj, True, 0
                continue
            return _done(P, W, b, it, True, "machine_precision")  # no progress left
        W, b, F, G, gb = W_t, b_t, F_t, G_new, gb_new
        P.record(F, W, b)
        if P.check_separable(it, W, b, every=1):
            return _done(P, W, b, it, False, "separable")
    return _done(P, W, b, P.max_iter, False, "max_iter")


def _line_search(P: Problem, W, b, dW, db, F: float, decrease: float, exact: bool):
    """Armijo backtracking on F from the full step (just the full step when ``exact``);
    returns the point, its F and the gradient of f there."""
    G_new, gb_new = np.empty_like(W), np.empty_like(b)
    t = 1.0
    while True:
        W_t, b_t = W + t * dW, b + t * db
        F_t = P.F_from_f(P.f_grad(W_t, b_t, G_new, gb_new), W_t)
        if exact or F_t <= F + 1e-4 * t * decrease or t < 1e-6:
            return W_t, b_t, F_t, G_new, gb_new
        t *= 0.5


def _model_minimiser(H, W, b, G, gb, a1: float, tol: float, max_sweeps: int):
    """Minimise ``<g, D> + D^T H D / 2 + a1 |W + D_W|`` by CD on H, on centred columns.

    Centring by the Hessian's weighted column means (``_scaling``) is exact (W and its L1 part
    are unchanged) and decouples the bias from columns whose means are far from zero, which
    otherwise make CD crawl; CD itself does not depend on the columns' scales.
    """
    J = centring(gram_affine(H)).matrix()
    theta0 = np.append(W[:, 0], b[0])
    C = 0.5 * (J.T @ (H @ theta0 - np.append(G[:, 0], gb[0])))[:, None]
    Wn, cn = W.copy(), b - J[-1, :-1] @ W  # centred bias c = b + mu^T w (J[-1, :-1] = -mu)
    Hc = J.T @ H @ J
    # A tiny ridge keeps CD defined on constant or flat columns; relative to each column's own
    # curvature (after centring), so a column of scale 1e-3 beside one of 1e4 keeps its step.
    diag = np.diag(Hc).copy()
    Hc[np.diag_indices_from(Hc)] += 1e-12 * diag + 1e-30 * max(float(diag.max()), 1e-270)
    kernels.cd_gram(0.5 * Hc, C, Wn, cn, a1, 0.0, tol, max_sweeps)
    return Wn, cn + J[-1, :-1] @ Wn


def _done(P: Problem, W, b, n_iter, converged, criterion) -> FitResult:
    return P.result("prox_newton", W, b, n_iter, converged, criterion)
