"""Gradient methods: proximal gradient descent (the lecture's), FISTA, and mini-batch SGD.

All three stop when the proximal-gradient mapping ``(W - prox(W - s G)) / s`` (the gradient
itself when R is smooth) has max-norm below ``tol``.
"""

from __future__ import annotations

import numpy as np

from ._problem import FitResult, NonFiniteError, Problem


def _prox_step(P: Problem, W, b, G, gb, step):
    """One proximal-gradient step from (W, b) with gradient (G, gb) and step size ``step``."""
    W_new = W - step * G
    P.pen.prox_l1(W_new, step)
    return W_new, b - step * gb


def _first_step(P: Problem, step: float | None) -> float:
    """The given step, or 1 / L from the seeded Lipschitz estimate (which must be finite)."""
    if step is not None:
        return step
    L = P.obj.lipschitz(seed=P.seed)
    if not np.isfinite(L):
        raise NonFiniteError(P._non_finite_message(L, "in the Lipschitz estimate"))
    return 1.0 / L


def _sufficient_decrease(f_new, f, G, gb, dW, db, step) -> bool:
    """Backtracking test of the quadratic upper model: f_new <= f + <g, d> + |d|^2 / (2 s)."""
    lin = float(np.vdot(G, dW) + np.vdot(gb, db))
    quad = float(np.vdot(dW, dW) + np.vdot(db, db)) / (2.0 * step)
    return f_new <= f + lin + quad + 1e-12 * abs(f)


def gd(P: Problem, W, b, *, step: float | None = None, step_rule: str = "bb",
       memory: int = 10) -> FitResult:
    """Proximal gradient descent: the lecture's method with a line search.

    ``step_rule="backtracking"``: halve the step until the quadratic upper model holds, then
    let it grow 25% (monotone). ``step_rule="bb"`` (default): try the Barzilai-Borwein step
    ``<s, s> / <s, y>`` first and accept on a non-monotone sufficient decrease against the
    largest of the last ``memory`` values of F (SpaRSA): the same descent steps, far fewer of
    them on ill-conditioned problems.
    """
    step = _first_step(P, step)
    G, gb = np.empty_like(W), np.empty_like(b)
    f = P.f_grad(W, b, G, gb)
    recent = [P.F_from_f(f, W)]
    G_new, gb_new = np.empty_like(W), np.empty_like(b)
    for it in range(1, P.max_iter + 1):
        while True:
            W_new, b_new = _prox_step(P, W, b, G, gb, step)
            f_new = P.f_grad(W_new, b_new, G_new, gb_new)
            dW, db = W_new - W, b_new - b
            if step_rule == "backtracking":
                ok = _sufficient_decrease(f_new, f, G, gb, dW, db, step)
            else:
                dd = float(np.vdot(dW, dW) + np.vdot(db, db))
                ok = P.F_from_f(f_new, W_new) <= max(recent) - 1e-4 * dd / (2 * step)
            if ok or step < 1e-300:
                break
            step *= 0.5
        mapping = max(np.abs(dW).max(), np.abs(db).max(initial=0.0)) / step
        if step_rule == "bb":
            sy = float(np.vdot(dW, G_new - G) + np.vdot(db, gb_new - gb))
            dd = float(np.vdot(dW, dW) + np.vdot(db, db))
            next_step = dd / sy if sy > 0 and dd > 0 else 1.25 * step
        else:
            next_step = 1.25 * step
        W, b, f = W_new, b_new, f_new
        G, G_new, gb, gb_new = G_new, G, gb_new, gb
        F = P.F_from_f(f, W)
        recent = (recent + [F])[-memory:]
        P.record(F, W, b)
        if mapping <= P.tol:
            return P.result("gd", W, b, it, True, "gradient_mapping")
        if P.check_separable(it, W, b):
            return P.result("gd", W, b, it, False, "separable")
        step = next_step
    return P.result("gd", W, b, P.max_iter, False, "max_iter")


def agd(P: Problem, W, b, *, step: float | None = None) -> FitResult:
    """FISTA with backtracking (the step may also grow) and function-value adaptive restart."""
    step = _first_step(P, step)
    Y, yb = W.copy(), b.copy()
    G, gb = np.empty_like(W), np.empty_like(b)
    G_new, gb_new = np.empty_like(W), np.empty_like(b)
    F_old = np.inf
    t = 1.0
    for it in range(1, P.max_iter + 1):
        fy = P.f_grad(Y, yb, G, gb)
        while True:
            W_new, b_new = _prox_step(P, Y, yb, G, gb, step)
            f_new = P.f_grad(W_new, b_new, G_new, gb_new)
            if _sufficient_decrease(f_new, fy, G, gb, W_new - Y, b_new - yb, step) or \
                    step < 1e-300:  # no step decreases f (non-finite values): record stops it
                break
            step *= 0.5
        F_new = P.F_from_f(f_new, W_new)
        # The mapping at W_new itself, from the gradient the backtracking test computed there.
        W_chk, b_chk = _prox_step(P, W_new, b_new, G_new, gb_new, step)
        mapping = max(np.abs(W_chk - W_new).max(), np.abs(b_chk - b_new).max(initial=0.0)) / step
        P.record(F_new, W_new, b_new)
        if mapping <= P.tol:
            return P.result("agd", W_new, b_new, it, True, "gradient_mapping")
        if P.check_separable(it, W_new, b_new):
            return P.result("agd", W_new, b_new, it, False, "separable")
        if F_new > F_old and t > 1.0:  # momentum overshot: restart from the last iterate
            t = 1.0
            Y, yb = W.copy(), b.copy()
            continue
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        Y = W_new + beta * (W_new - W)
        yb = b_new + beta * (b_new - b)
        W, b, F_old, t = W_new, b_new, F_new, t_new
        step *= 1.1  # let the step follow the local curvature (backtracking shrinks it back)
    return P.result("agd", W, b, P.max_iter, False, "max_iter")


def sgd(P: Problem, W, b, *, batch_size: int = 256, lr: float | None = None,
        variance_reduction: bool = True) -> FitResult:
    """Mini-batch (proximal) SGD over seeded shuffles; one iteration is one epoch.

    With ``variance_reduction`` (SVRG) each epoch starts with a full gradient at a snapshot and
    the steps use ``g_batch(W) - g_batch(W_snap) + g_full(W_snap)``, so a constant step reaches
    the exact optimum; the epoch's step is fitted to the local curvature by a backtracking test
    on the full gradient (one extra pass). Without it, the step decays as ``lr / sqrt(epoch)``.
    """
    n = P.obj.n_samples
    rng = np.random.default_rng(P.seed)
    lr = _first_step(P, lr)
    G, gb = np.empty_like(W), np.empty_like(b)
    Gs, gbs = np.empty_like(W), np.empty_like(b)
    Gf, gbf = np.empty_like(W), np.empty_like(b)
    f = P.f_grad(W, b, Gf, gbf)
    batches = max(1, -(-n // batch_size))
    for epoch in range(1, P.max_iter + 1):
        W_snap, b_snap = W.copy(), b.copy()
        if variance_reduction:
            while True:
                W_try, b_try = _prox_step(P, W, b, Gf, gbf, lr)
                if _sufficient_decrease(P.f(W_try, b_try), f, Gf, gbf, W_try - W, b_try - b,
                                        lr) or lr < 1e-300:
                    break
                lr *= 0.5
            step = 0.5 * lr
        else:
            step = lr / np.sqrt(epoch)
        order = rng.permutation(n)
        for j in range(batches):
            sub = P.obj.sample(order[j * batch_size:(j + 1) * batch_size])
            sub.loss_grad(W, b, G, gb)
            P.pen.add_smooth_grad(W, G)
            if variance_reduction:
                sub.loss_grad(W_snap, b_snap, Gs, gbs)
                P.pen.add_smooth_grad(W_snap, Gs)
                G += Gf - Gs
                gb += gbf - gbs
            W, b = _prox_step(P, W, b, G, gb, step)
        f = P.f_grad(W, b, Gf, gbf)
        P.record(P.F_from_f(f, W), W, b)
        W_chk, b_chk = _prox_step(P, W, b, Gf, gbf, step)
        mapping = max(np.abs(W_chk - W).max(), np.abs(b_chk - b).max(initial=0.0)) / step
        if mapping <= P.tol:
            return P.result("sgd", W, b, epoch, True, "gradient_mapping")
        if P.check_separable(epoch, W, b, every=1):
            return P.result("sgd", W, b, epoch, False, "separable")
        if variance_reduction:  # the next epoch's backtracking shrinks it back if too long;
            lr *= 1.25  # the plain decaying step has no such test and must not grow
    return P.result("sgd", W, b, P.max_iter, False, "max_iter")
