"""Proximal Newton from Hessian-vector products, for the models with several outputs.

For softmax (and one-vs-rest, multilabel, multi-output linear) the Hessian has ((k+1) m)^2
entries and forming it costs far more than a pass, so the L1-penalised quadratic model

    q(D) = <g, D> + 1/2 D^T H D + a1 |W + D_W|_1

is minimised by FISTA with Hessian-vector products taken on a fixed random sample of rows
(``newton``'s ``_SampledHessian``: each product costs ``sample / n`` of a pass). The exact
gradient and an Armijo search on the exact F then make every step a true descent step, so the
iterates reach the exact optimum; a sampled Hessian only changes how good each step is. On
1e6 rows this takes tens of pass-equivalents where L-BFGS-B on the split needs hundreds.
Stops when the max-norm of the minimal subgradient of F falls below ``tol``.
"""

from __future__ import annotations

import numpy as np

from ._problem import FitResult, Problem
from ._scaling import InCoordinates
from .second_order import problem_affine, sampled_hessian

STALL = 50  # iterations without halving the residual before handing over to split_lbfgs


def _curvature_bound(H, W, b, n_iter: int = 15, seed: int = 0) -> float:
    """Largest eigenvalue of the (sampled) Hessian by power iteration, with a 10% margin."""
    rng = np.random.default_rng(seed)
    V, vb = rng.standard_normal(W.shape), rng.standard_normal(b.shape)
    HV, hb = np.empty_like(W), np.empty_like(b)
    lam = 0.0
    for _ in range(n_iter):
        norm = np.sqrt(float(np.vdot(V, V) + np.vdot(vb, vb)))
        V, vb = V / norm, vb / norm
        H.hessp(W, b, V, vb, HV, hb)
        lam = float(np.vdot(V, HV) + np.vdot(vb, hb))
        V, vb = HV.copy(), hb.copy()
    return 1.1 * max(lam, 1e-12)


def _model_step(P: Problem, H, W, b, G, gb, L: float, tol_inner: float, max_inner: int):
    """Minimise q by FISTA (with restart) over Z = W + D_W, c = b + D_b; return (Z, c)."""
    a1 = P.l1  # a1, or a1 per coordinate (InCoordinates)
    Z, c = W.copy(), b.copy()
    Y, yc = Z.copy(), c.copy()
    HD, hd = np.empty_like(W), np.empty_like(b)
    t = 1.0
    q_old = np.inf
    for _ in range(max_inner):
        H.hessp(W, b, Y - W, yc - b, HD, hd)
        gY, gc = G + HD, gb + hd
        Z_new = Y - gY / L
        if P.pen.a1:
            Z_new = np.sign(Z_new) * np.maximum(np.abs(Z_new) - a1 / L, 0.0)
        c_new = yc - gc / L
        mapping = max(float(np.abs(Z_new - Y).max()), float(np.abs(c_new - yc).max())) * L
        # q at Y (smooth part) decides the restart; cheap from the product just taken
        D, d = Y - W, yc - b
        q = (float(np.vdot(G, D) + np.vdot(gb, d)) + 0.5 * float(np.vdot(D, HD) + np.vdot(d, hd))
             + float(np.sum(a1 * np.abs(Y))))
        if q > q_old and t > 1.0:  # momentum overshot: restart from the last iterate
            t, Y, yc, q_old = 1.0, Z.copy(), c.copy(), np.inf
            continue
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        Y, yc = Z_new + beta * (Z_new - Z), c_new + beta * (c_new - c)
        Z, c, t, q_old = Z_new, c_new, t_new, q
        if mapping <= tol_inner:
            break
    return Z, c


def prox_newton_hvp(P: Problem, W, b, *, sample: int | None = None,
                    max_inner: int = 200) -> FitResult:
    """Subsampled proximal Newton for any model, any reg (CPU objectives)."""
    P.solver_name = "prox_newton"  # also for the results of newton and split_lbfgs below
    if not P.pen.a1:  # smooth F: the model's minimiser is the Newton step, which CG finds
        from .second_order import newton  # far better than FISTA when H is ill-conditioned

        result = newton(P, W, b, hessian_sample=sample)
        result.solver = "prox_newton"
        return result
    sampled = sampled_hessian(P, sample)
    A = problem_affine(P)
    if A.identity:  # standardised columns: the plain coordinates
        outcome = _run(P, sampled if sampled is not None else P, W, b, max_inner)
    else:  # centred and scaled coordinates (_scaling): conditioned models on unscaled data
        Q = InCoordinates(P, A)
        outcome = _run(Q, Q.with_hessian(sampled) if sampled is not None else Q,
                       *A.from_wb(W, b), max_inner)
        if isinstance(outcome, tuple):
            outcome = A.to_wb(*outcome)
    if isinstance(outcome, tuple):  # the sample misjudged the curvature, or the models
        # stopped helping: finish quasi-Newton
        from .split_lbfgs import split_lbfgs

        done = len(P.history)
        result = split_lbfgs(P, *outcome)
        result.solver = "prox_newton"
        result.n_iter += done
    else:
        result = outcome
    return result


def _run(P, H, W, b, max_inner: int) -> FitResult | tuple[np.ndarray, np.ndarray]:
    """Iterate on P (a Problem or an InCoordinates view); hand (W, b) back instead when a
    sampled H keeps forcing short steps (as on small, nearly separable sets, where a few rows
    carry the curvature)."""
    short_steps = 0
    G, gb = np.empty_like(W), np.empty_like(b)
    G_new, gb_new = np.empty_like(W), np.empty_like(b)
    f = P.f_grad(W, b, G, gb)
    F = P.F_from_f(f, W)
    a1 = P.l1
    best, best_it = np.inf, 0
    for it in range(1, P.max_iter + 1):
        residual = P.residual(W, b, G, gb)
        if residual <= P.tol:
            return P.result("prox_newton", W, b, it - 1, True, "subgradient")
        if residual < 0.5 * best:
            best, best_it = residual, it
        elif it - best_it >= STALL:  # the models stopped helping: finish quasi-Newton
            return W, b
        L = _curvature_bound(H, W, b, seed=P.seed + it)
        Z, c = _model_step(P, H, W, b, G, gb, L, 0.1 * residual, max_inner)
        dW, db = Z - W, c - b
        delta = (float(np.vdot(G, dW) + np.vdot(gb, db))
                 + (float(np.sum(a1 * (np.abs(Z) - np.abs(W)))) if P.pen.a1 else 0.0))
        # Below F's rounding F cannot judge a step: the full step if it lowers the residual.
        flat = -delta <= 1e-12 * abs(F)
        step = 1.0
        while True:
            W_new = W + step * dW  # a full step lands on the model's exact zeros
            b_new = b + step * db
            f_new = P.f_grad(W_new, b_new, G_new, gb_new)
            F_new = P.F_from_f(f_new, W_new)
            if flat:
                if P.residual(W_new, b_new, G_new, gb_new) >= residual:
                    return P.result("prox_newton", W, b, it, True, "machine_precision")
                F_new = min(F_new, F)  # (rounding)
                break
            if F_new <= F + 1e-4 * step * min(delta, 0.0) or step < 1e-10:
                break
            step *= 0.5
        if F_new > F:  # no decrease left: machine precision (or a useless model)
            return P.result("prox_newton", W, b, it, True,
                            "machine_precision" if residual <= 100 * P.tol
                            else "line_search_failed")
        W, b, F = W_new, b_new, F_new
        G, G_new, gb, gb_new = G_new, G, gb_new, gb
        P.record(F, W, b)
        short_steps = short_steps + 1 if step < 1.0 else 0
        if H is not P and short_steps >= 2:
            return W, b
        if P.check_separable(it, W, b, every=1):
            return P.result("prox_newton", W, b, it, False, "separable")
    return P.result("prox_newton", W, b, P.max_iter, False, "max_iter")
