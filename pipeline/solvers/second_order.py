"""Curvature methods for smooth F (reg none or l2): L-BFGS and Newton-CG.

Both stop when the max-norm of the gradient of F is below ``tol``.
"""

from __future__ import annotations

import numpy as np

from ._problem import FitResult, Problem, pack, unpack
from ._scaling import Affine, InCoordinates


class _SeparableError(Exception):
    pass


def run_lbfgsb(P: Problem, fun, x0: np.ndarray, to_wb, memory: int, bounds=None,
               gtol: float | None = None, residual_of=None):
    """scipy's L-BFGS-B on ``fun`` (x -> F, dF/dx), recording F per step for the history.

    ``to_wb`` maps x to (W, b); ``gtol`` is the projected-gradient tolerance in x (default
    ``tol``). When L-BFGS-B stops on no relative progress or a failed line search while
    ``residual_of(res)`` (the optimality residual in W, b) is still above ``tol``, it restarts
    from there with a fresh memory, at most twice, within ``max_iter`` iterations in all.
    Returns ``(res, None)`` (``res.nit`` counts every run), or ``(None, (W, b))`` when the
    in-loop check found the data separated (then there is no finite optimum to wait for).
    """
    from scipy.optimize import minimize  # lazy: scipy.optimize costs ~0.2 s to import

    state = {"x": x0}

    def watched(x):
        state["x"] = x
        return fun(x)

    def step(intermediate_result):
        Wx, bx = to_wb(intermediate_result.x)
        P.record(intermediate_result.fun, Wx, bx)
        if P.check_separable(len(P.history), Wx, bx):
            raise _SeparableError

    x, nit = x0, 0
    try:
        for _ in range(3):
            res = minimize(watched, x, jac=True, method="L-BFGS-B", bounds=bounds,
                           callback=step,
                           options={"maxiter": P.max_iter - nit, "maxcor": memory,
                                    "gtol": P.tol if gtol is None else gtol, "ftol": 1e-16,
                                    "maxfun": 20 * P.max_iter})
            nit += int(res.nit)
            if (res.status == 1 or nit >= P.max_iter or residual_of is None
                    or residual_of(res) <= P.tol or res.nit == 0):
                break
            x = res.x
    except _SeparableError:
        Wx, bx = to_wb(state["x"])
        return None, (Wx.copy(), bx.copy())
    res.nit = nit
    return res, None


def lbfgsb_verdict(res, name: str) -> tuple[bool, str]:
    """(claimed converged, criterion) of an L-BFGS-B run; ``Problem.result`` then checks the
    final residual: at most tol for ``name``, at most 100 tol when L-BFGS-B stopped on no
    relative progress (ftol ~ 0) or a failed line search (machine precision)."""
    if res.status == 1:
        return False, "max_iter"
    if res.status == 0 and "PROJ" in str(res.message).upper():
        return True, name
    return True, "machine_precision"


def problem_affine(P: Problem) -> Affine:
    """The (V, c) coordinates for P's data: its columns centred and scaled (identity when
    already standardised); column moments from a seeded sample of rows."""
    return Affine.from_moments(*P.obj.column_moments(seed=P.seed), P.obj.curvature(), P.pen.a2)


class _FreeHessian:
    """Hessian products of f in (V, c) on the free coordinates (``newton_polish``)."""

    def __init__(self, P: Problem, A: Affine, free: np.ndarray):
        self.P, self.A, self.free = P, A, free
        # Unpenalised softmax is flat along W + u 1^T, b + t 1: keep products off that line.
        self.flat = P.obj.model == "softmax" and not P.pen.a1 and not P.pen.a2

    def project(self, V, vb):
        """(V, vb) with the flat direction removed (unpenalised softmax), else as given."""
        if not self.flat:
            return V, vb
        return V - V.mean(axis=1, keepdims=True), vb - vb.mean()

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        V, vb = self.project(np.where(self.free, V, 0.0), vb)
        Wv, bv = self.A.to_wb(V, vb)  # linear: maps differences too
        H, hb = np.empty_like(W), np.empty_like(b)
        self.P.hessp(W, b, Wv, bv, H, hb)
        HV, hc = self.project(*self.A.grad_to_v(H, hb))
        H_out[...] = np.where(self.free, HV, 0.0)
        hb_out[...] = hc


def newton_polish(P: Problem, A: Affine, W, b, max_steps: int = 10, max_cg: int = 50):
    """A few Newton-CG steps in the coordinates (V, c) on the free coordinates (all, or the
    non-zero weights under an L1 part), each kept only if it lowers the residual; a step that
    would change a weight's sign stops where the first weight reaches zero (it leaves).

    L-BFGS-B judges its steps by F, which stops resolving progress when the gradient is still
    ~1e-8 in (V, c); on columns of scale 1e4 that is ~1e-4 in (W, b). Newton steps are judged
    by the gradient itself and take it to rounding level. Returns (W, b, steps taken).
    """
    k, m = W.shape
    G, gb = np.empty_like(W), np.empty_like(b)
    f = P.f_grad(W, b, G, gb)
    residual, steps = P.residual(W, b, G, gb), 0
    for _ in range(max_steps):
        if residual <= P.tol:
            break
        free = W != 0 if P.pen.a1 else np.ones(W.shape, dtype=bool)
        H = _FreeHessian(P, A, free)
        gV, gc = A.grad_to_v(G + P.pen.a1 * np.sign(W), gb)
        g = pack(*H.project(np.where(free, gV, 0.0), gc))
        d = _cg(H, W, b, g, 1e-6 * float(np.linalg.norm(g)), max_cg)
        dW, db = A.to_wb(*unpack(d, k, m))
        dW = np.where(free, dW, 0.0)
        cross = free & (np.sign(W + dW) != np.sign(W)) & bool(P.pen.a1)
        crossing = bool(cross.any())
        if crossing:  # a weight reaches zero first: step there, it leaves the support
            fr = np.where(cross, W / np.where(cross, W - (W + dW), 1.0), np.inf)
            j = np.unravel_index(np.argmin(fr), W.shape)
            t = float(fr[j])
            dW, db = t * dW, t * db
        W_new, b_new = np.ascontiguousarray(W + dW), b + db
        if crossing:
            W_new[j] = 0.0
        G_new, gb_new = np.empty_like(W), np.empty_like(b)
        f_new = P.f_grad(W_new, b_new, G_new, gb_new)
        new_residual = P.residual(W_new, b_new, G_new, gb_new)
        # the step to a zero crossing is judged by F (the quadratic falls along it), the others
        # by the residual (F is at its rounding level there)
        if not (P.F_from_f(f_new, W_new) <= P.F_from_f(f, W) if crossing
                else new_residual < residual):
            break
        W, b, f, G, gb, residual = W_new, b_new, f_new, G_new, gb_new, new_residual
        steps += 1
        P.record(P.F_from_f(f, W), W, b)
    return W, b, steps


def lbfgs(P: Problem, W, b, *, memory: int = 10) -> FitResult:
    """scipy's L-BFGS-B driving the fused loss-and-gradient kernel (one pass per evaluation),
    in centred and scaled coordinates (``_scaling``: exact, and well conditioned on features
    a user did not standardise)."""
    k, m = W.shape
    G, gb = np.empty_like(W), np.empty_like(b)
    A = problem_affine(P)

    def to_wb(x):
        return A.to_wb(*unpack(x, k, m))

    def fun(x):
        Wx, bx = to_wb(x)
        f = P.f_grad(Wx, bx, G, gb)
        return f, pack(*A.grad_to_v(G, gb))

    def residual_of(res):
        gV, gc = unpack(res.jac, k, m)
        return float(np.abs(pack(gV / A.d[:, None] + np.outer(A.mu, gc), gc)).max())

    res, separated = run_lbfgsb(P, fun, pack(*A.from_wb(W, b)), to_wb, memory,
                                gtol=A.tol_v(P.tol), residual_of=residual_of)
    return finish_lbfgsb(P, A, "lbfgs", res, separated, to_wb, residual_of, "gradient")


def finish_lbfgsb(P: Problem, A, name: str, res, separated, to_wb, residual_of,
                  criterion: str) -> FitResult:
    """The FitResult of an L-BFGS-B run in ``A``'s coordinates: the separable stop, the
    verdict, and a Newton polish when L-BFGS-B stopped short of ``tol`` (lbfgs, split_lbfgs)."""
    if separated is not None:
        return P.result(name, separated[0], separated[1], len(P.history), False, "separable")
    Wx, bx = to_wb(res.x)
    converged, verdict = lbfgsb_verdict(res, criterion)
    n_iter = int(res.nit)
    if converged and residual_of(res) > P.tol:
        Wx, bx, steps = newton_polish(P, A, Wx, bx)
        n_iter += steps
    return P.result(name, Wx.copy(), bx.copy(), n_iter, converged, verdict, near_ok=True)


def _cg(P, W, b, g: np.ndarray, tol: float, max_cg: int) -> np.ndarray:
    """Solve H d = -g by conjugate gradients with Hessian-vector products ``P.hessp``."""
    k, m = W.shape
    d = np.zeros_like(g)
    r = -g.copy()
    p = r.copy()
    rr = float(r @ r)
    H, hb = np.empty_like(W), np.empty_like(b)
    for _ in range(max_cg):
        if np.sqrt(rr) <= tol:
            break
        V, vb = unpack(p, k, m)
        P.hessp(W, b, np.ascontiguousarray(V), vb, H, hb)
        Hp = pack(H, hb)
        curv = float(p @ Hp)
        if curv <= 1e-300:  # flat direction (unpenalised bias of softmax): stop here
            break
        alpha = rr / curv
        d += alpha * p
        r -= alpha * Hp
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return d if d.any() else -g


SAMPLE_FROM = 200_000  # rows from which newton subsamples its Hessian by default
SAMPLE_MIN = 50_000


class _SampledHessian:
    """Hessian-vector products of f on a fixed random subset of rows (Byrd et al., 2011).

    The subset's mean-loss Hessian estimates the full one, so CG costs ``sample / n`` of a pass
    per product while the gradient and the line search stay exact: the iterates converge to
    the true optimum, only the steps are slightly less than Newton's.
    """

    def __init__(self, P: Problem, sample: int):
        n = P.obj.n_samples
        rows = np.sort(np.random.default_rng(P.seed).choice(n, size=sample, replace=False))
        self.P, self.sub = P, P.obj.sample(rows)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        self.sub.hessp(W, b, V, vb, H_out, hb_out)
        if self.P.pen.a2:
            H_out += (2.0 * self.P.pen.a2) * V


class _AccumulatedHessian:
    """The same sampled Hessian as :class:`_SampledHessian`, for a sample larger than its
    source lets it hold (``Objective.max_sample_bytes``: a streamed file): the ((k+1) m)^2
    matrix is accumulated chunk by chunk at each new (W, b), one pass, and every product
    within that Newton step is a matrix-vector product. Memory O((k m)^2), not the rows."""

    def __init__(self, P: Problem, sample: int):
        n = P.obj.n_samples
        self.rows = np.sort(np.random.default_rng(P.seed).choice(n, size=sample, replace=False))
        self.P, self._H = P, np.empty(0)
        self._at: tuple[bytes, bytes] | None = None

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        at = (W.tobytes(), b.tobytes())
        if at != self._at:
            self._H, self._at = self.P.obj.sampled_hessian(self.rows, W, b), at
        k, m = V.shape
        u = np.vstack([V, vb[None, :]]).T.ravel()  # outputs major, as the matrix
        h = (self._H @ u).reshape(m, k + 1).T
        H_out[...], hb_out[...] = h[:k], h[k]
        if self.P.pen.a2:
            H_out += (2.0 * self.P.pen.a2) * V


def sampled_hessian(P: Problem, sample: int | None):
    """The Hessian sample of ``sample`` rows (drawn with ``P.seed``), or None for the full
    Hessian. None picks the size: all rows below SAMPLE_FROM, else n / 20 (at least
    SAMPLE_MIN). ``sample >= 1`` is checked before the solver runs. A sample whose rows
    would exceed the source's ``max_sample_bytes`` is accumulated instead of taken."""
    n = P.obj.n_samples
    if sample is None:
        sample = n if n < SAMPLE_FROM else max(SAMPLE_MIN, n // 20)
    if sample >= n:
        return None
    if int(sample) * P.obj.n_features * 8 > P.obj.max_sample_bytes:
        return _AccumulatedHessian(P, int(sample))
    return _SampledHessian(P, int(sample))


def newton(P: Problem, W, b, *, max_cg: int = 50,
           hessian_sample: int | None = None) -> FitResult:
    """Inexact Newton (truncated CG, forcing term min(0.5, sqrt|g|)) with Armijo backtracking.

    ``hessian_sample``: rows of a fixed random subset on which the Hessian-vector products are
    taken; each CG step then costs a fraction of a pass, and the exact gradient keeps the
    optimum exact. None (default): all rows below SAMPLE_FROM rows, else n / 20 (at least
    SAMPLE_MIN); n or more: all rows. At 1e6 x 100 softmax this reached 1e-6 in 10-13
    pass-equivalents where the full Hessian took 48 and L-BFGS 29.
    """
    k, m = W.shape
    sampled = sampled_hessian(P, hessian_sample)
    A = problem_affine(P)
    Q: Problem | InCoordinates = P
    H: Problem | InCoordinates | _SampledHessian = sampled if sampled is not None else P
    if not A.identity:  # centred and scaled coordinates (_scaling): a conditioned Hessian
        view = InCoordinates(P, A)
        Q, H = view, view.with_hessian(sampled) if sampled is not None else view
        W, b = A.from_wb(W, b)
    result = _newton(Q, H, W, b, k, m, max_cg)
    return result


def _newton(P, H, W, b, k: int, m: int, max_cg: int) -> FitResult:
    """The Newton loop on P (a Problem or an InCoordinates view of one)."""
    G, gb = np.empty_like(W), np.empty_like(b)
    f = P.f_grad(W, b, G, gb)
    short_steps = 0
    for it in range(1, P.max_iter + 1):
        g = pack(G, gb)
        gnorm = float(np.linalg.norm(g))
        residual = P.residual(W, b, G, gb)
        if residual <= P.tol:
            return P.result("newton", W, b, it - 1, True, "gradient")
        d = _cg(H, W, b, g, min(0.5, np.sqrt(gnorm)) * gnorm, max_cg)
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction (numerical trouble): fall back to -g
            d, slope = -g, -gnorm * gnorm
        dW, db = unpack(d, k, m)
        t = 1.0
        # Below F's rounding, F cannot judge the step: a full step that lowers the residual
        # is taken then (near the optimum Newton's full step is right).
        flat = -slope <= 1e-12 * abs(f)
        while True:
            W_new, b_new = W + t * dW, b + t * db
            f_new = P.f_grad(W_new, b_new, G, gb)
            if flat:
                if P.residual(W_new, b_new, G, gb) >= residual:  # no step helps any more
                    return P.result("newton", W, b, it, True, "machine_precision")
                break
            if f_new <= f + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        if t < 1e-10 and f_new > f:
            return P.result("newton", W, b, it, True, "machine_precision")
        # A sampled Hessian that keeps forcing short steps misjudges the curvature (a few rows
        # carry it, as near separation): go on with the full one.
        short_steps = short_steps + 1 if t < 1.0 else 0
        if H is not P and short_steps >= 2:
            H = P
        W, b, f = W_new, b_new, f_new
        P.record(f, W, b)
        if P.check_separable(it, W, b, every=1):
            return P.result("newton", W, b, it, False, "separable")
    return P.result("newton", W, b, P.max_iter, False, "max_iter")
