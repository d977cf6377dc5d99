"""F = L + R as the solvers see it, and the result every solver returns.

Solvers split F into a smooth part ``f = L + a2 ||W||^2`` (gradient from the fused kernel) and
the L1 part ``a1 ||W||_1`` (through its proximal step). This module holds that split, the
bookkeeping of a run (history, callback, passes, time) and the separability certificate.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..objectives import Objective
from ..penalties import Penalty

Callback = Callable[[int, float, float, np.ndarray, np.ndarray], None]


class SeparableDataWarning(UserWarning):
    """The classes are linearly separable and nothing bounds W: no finite optimum exists."""


class ConvergenceWarning(UserWarning):
    """A fit stopped before its optimality test held (like scikit-learn's): the result is
    the last iterate, not the optimum; ``FitResult.converged`` is False."""


class NonFiniteError(ValueError):
    """The objective or the weights became inf or NaN: no meaningful result exists."""


# Stops whose verdict is the final residual against tol, against 100 tol (the solver found no
# more decrease: machine precision), or the gradient mapping (first-order methods).
RESIDUAL_CRITERIA = ("gradient", "subgradient", "exact")
PRECISION_CRITERIA = ("machine_precision",)
MAPPING_CRITERIA = ("gradient_mapping",)


@dataclass
class FitResult:
    """What a solver found, and what it cost."""

    W: np.ndarray
    b: np.ndarray
    model: str
    reg: str
    lam: float
    l1_ratio: float
    solver: str
    objective: float
    loss: float
    penalty: float
    n_iter: int
    n_passes: int
    time_s: float
    converged: bool
    criterion: str
    history: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    classes: np.ndarray | None = None
    dtype: str = "float64"
    residual: float = float("nan")  # max-norm of the minimal subgradient of F at (W, b)
    gradient: np.ndarray | None = None  # dL/dW (k, m) at (W, b), from the final evaluation
    search: Any = None  # how the app chose lambda (pipeline.search.SearchRecord), if it did
    backend_facts: dict[str, Any] = field(default_factory=dict)  # dask: cluster, workers, chunks

    @property
    def n_nonzero(self) -> int:
        """Non-zero weights (the sparsity L1 buys)."""
        return int(np.count_nonzero(self.W))


class Problem:
    """One minimisation of F = L + R: evaluations, history and the stopping bookkeeping."""

    def __init__(self, objective: Objective, penalty: Penalty, tol: float, max_iter: int,
                 callback: Callback | None = None, seed: int = 0):
        self.obj = objective
        self.seed = int(seed)  # every random choice of the solver (samples, shuffles)
        self.pen = penalty
        self.tol = tol
        self.max_iter = int(max_iter)
        self.callback = callback
        self.history: list[float] = []
        self._evaluated = False  # the first f_grad (the starting point) must be finite
        self._saw_non_finite = False  # some trial point overflowed (a cause of failure)
        self.solver_name: str | None = None  # set when one solver runs another for its result
        self.warnings: list[str] = []
        self.t0 = time.perf_counter()
        self.can_diverge = objective.model != "linear" and penalty.lam == 0.0
        self._last: tuple | None = None  # (W, b, L, dL/dW, dL/db) of the last f_grad

    @property
    def l1(self) -> float:
        """The L1 weight a1 (an InCoordinates view has one per coordinate)."""
        return self.pen.a1

    # ------------------------------------------------------------------ evaluations
    def f_grad(self, W, b, G_out, gb_out) -> float:
        """Smooth part f = L + a2||W||^2 and its gradient (one pass).

        Trial points may give inf (a line search then backtracks); the very first evaluation,
        at the starting point, must be finite or no step can be judged.
        """
        f = self.obj.loss_grad(W, b, G_out, gb_out)
        # Kept (copies) so that the result's final evaluation at the same point is free: most
        # solvers stop right after evaluating their last iterate.
        self._last = (W.copy(), b.copy(), f, G_out.copy(), gb_out.copy())
        self.pen.add_smooth_grad(W, G_out)
        f += self.pen.smooth_value(W)
        if not np.isfinite(f):
            self._saw_non_finite = True
        if not self._evaluated:
            self._evaluated = True
            self.check_finite(f, W, b, G_out, "at the starting point")
        return f

    def f(self, W, b) -> float:
        """Smooth part alone."""
        return self.obj.loss(W, b) + self.pen.smooth_value(W)

    def F_from_f(self, f: float, W) -> float:
        """F = f + a1 ||W||_1."""
        return f + (self.pen.a1 * float(np.abs(W).sum()) if self.pen.a1 else 0.0)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        """Hessian of f applied to (V, vb)."""
        self.obj.hessp(W, b, V, vb, H_out, hb_out)
        if self.pen.a2:
            H_out += (2.0 * self.pen.a2) * V

    def residual(self, W, b, G, gb) -> float:
        """Max-norm of the minimal subgradient of F, bias included (G: gradient of f)."""
        return max(self.pen.subgrad_residual(W, G), float(np.abs(gb).max(initial=0.0)))

    # ------------------------------------------------------------------ non-finite values
    def check_finite(self, F: float, W, b, G=None, where: str = "") -> None:
        """Raise :class:`NonFiniteError` naming the likely cause if F, W, b (or G) is not finite.

        Asked for accepted iterates and the final point only: a trial step with f = inf is a
        line search's business (it backtracks).
        """
        if np.isfinite(F) and np.isfinite(W).all() and np.isfinite(b).all() and (
                G is None or np.isfinite(G).all()):
            return
        raise NonFiniteError(self._non_finite_message(F, where))

    def _overflow_causes(self, xmax: float) -> list[str]:
        causes = []
        if xmax > 1e50:
            causes.append(f"the largest |X| is {xmax:.3g}: standardise the features "
                          "(centre and scale each column)")
        if self.pen.lam > 1e50:
            causes.append(f"lam={self.pen.lam:g} is too large: use a smaller lam")
        return causes

    def _non_finite_message(self, F: float, where: str) -> str:
        xmax = self.obj.abs_max()
        causes = self._overflow_causes(xmax)
        if not causes:
            causes.append(f"values in X too large (largest |X| = {xmax:.3g}: standardise the "
                          f"features) or lam too large (lam={self.pen.lam:g})")
        return (f"the objective or the weights became non-finite (F={F}) {where}".rstrip()
                + "; likely cause: " + "; ".join(causes))

    # ------------------------------------------------------------------ bookkeeping
    def record(self, F: float, W, b) -> None:
        """Append F to the history and tell the callback ``(step, F, L, W, b)``.

        Every accepted iterate passes here: a non-finite one stops the fit with an error.
        """
        self.check_finite(F, W, b, where=f"at step {len(self.history) + 1}")
        self.history.append(float(F))
        if self.callback is not None:
            L = float(F) - self.pen.value(W)
            self.callback(len(self.history), float(F), L, W, b)

    def separated(self, W, b) -> bool:
        """True when (W, b) classifies every training row strictly right (one pass).

        Then scaling W up lowers the loss forever: the data are separable and an unpenalised
        classifier has no finite optimum. Only asked when ``can_diverge``.
        """
        return self.obj.classifies_all(W, b)

    def check_separable(self, it: int, W, b, every: int = 10) -> bool:
        """Every ``every`` steps, stop with a warning if the data are separated."""
        if not self.can_diverge or it % every or not self.separated(W, b):
            return False
        self._warn_separable()
        return True

    def _warn_separable(self) -> None:
        msg = (f"{self.obj.model}: the training data are linearly separable, so the "
               "unpenalised loss has no finite minimiser (its infimum 0 is approached as |W| "
               "grows). Stopped; add regularisation (reg=l2 or reg=l1 with lam > 0).")
        warnings.warn(msg, SeparableDataWarning, stacklevel=5)
        self.warnings.append(msg)

    def stop_separable(self, solver: str, W, b) -> FitResult:
        """Result for data proven separable before training: the separating (W, b) found."""
        self._warn_separable()
        self.record(self.obj.loss(W, b), W, b)
        return self.result(solver, np.ascontiguousarray(W), b, 0, False, "separable")

    def result(self, solver: str, W, b, n_iter: int, converged: bool, criterion: str,
               near_ok: bool = False, **extra) -> FitResult:
        """Final F, L, R and optimality residual at (W, b), with an honest verdict.

        One more pass, unless the last evaluation was at exactly this (W, b).

        ``converged`` is the solver's claim; it stands only if the final residual agrees: at
        most ``tol`` for the residual criteria, at most ``100 tol`` for a stop at machine
        precision; the gradient mapping of the first-order methods is their own test. Any
        other stop but separability warns :class:`ConvergenceWarning` once. ``near_ok``: a
        residual criterion met by the solver's own test in other coordinates (L-BFGS-B) with a
        final residual within 100 tol counts as a stop at machine precision.
        """
        solver = self.solver_name or solver
        W = np.ascontiguousarray(W)
        G, gb = np.empty_like(W), np.empty_like(b)
        last = self._last
        if last is not None and np.array_equal(last[0], W) and np.array_equal(last[1], b):
            loss = last[2]
            G[...], gb[...] = last[3], last[4]
        else:
            loss = self.obj.loss_grad(W, b, G, gb)
        loss_gradient = G.copy()
        self.pen.add_smooth_grad(W, G)
        pen = self.pen.value(W)
        self.check_finite(loss + pen, W, b, G, "at the final point")
        residual = self.residual(W, b, G, gb)
        if near_ok and converged and criterion in RESIDUAL_CRITERIA and residual > self.tol:
            criterion = "machine_precision"
        converged = bool(converged) and criterion != "separable" and (
            (criterion in MAPPING_CRITERIA and residual <= 100 * self.tol)
            or (criterion in RESIDUAL_CRITERIA and residual <= self.tol)
            or (criterion in PRECISION_CRITERIA and residual <= 100 * self.tol))
        if criterion == "max_iter" and n_iter < self.max_iter:
            criterion = "max_evaluations"  # the cap on function evaluations came first
        if not converged and criterion != "separable":
            self._fail_on_overflow(solver, residual)
            self._warn_not_converged(solver, n_iter, criterion, residual)
        return FitResult(
            W=W, b=b, model=self.obj.model, reg=self.pen.reg, lam=self.pen.lam,
            l1_ratio=self.pen.l1_ratio, solver=solver, objective=loss + pen, loss=loss,
            penalty=pen, n_iter=n_iter, n_passes=self.obj.n_passes,
            time_s=time.perf_counter() - self.t0, converged=converged, criterion=criterion,
            history=self.history, warnings=self.warnings, residual=residual,
            gradient=loss_gradient, **extra)

    def _fail_on_overflow(self, solver: str, residual: float) -> None:
        """A fit that failed where values overflow (or nearly: |X| or lam beyond 1e50) is an
        error naming the cause, not a warning: its last iterate means nothing."""
        causes = self._overflow_causes(self.obj.abs_max())
        if self._saw_non_finite and not causes:
            causes = ["values overflowed on the way: standardise the features or lower lam"]
        if causes:
            raise NonFiniteError(f"{solver} failed (optimality residual {residual:.3g}) with "
                                 "values beyond floating-point range; likely cause: "
                                 + "; ".join(causes))

    def _warn_not_converged(self, solver: str, n_iter: int, criterion: str,
                            residual: float) -> None:
        why = {"max_iter": f"reached max_iter={self.max_iter}",
               "max_evaluations": "reached its cap on function evaluations"}.get(
                   criterion, f"stopped ({criterion.replace('_', ' ')})")
        msg = (f"{solver} did not converge: it {why} after {n_iter} iterations with optimality "
               f"residual {residual:.3g} > tol={self.tol:g}. Raise max_iter, loosen tol, "
               "standardise the features, or try another solver.")
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)
        self.warnings.append(msg)


def pack(W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(W, b) -> one flat vector (for scipy and CG)."""
    return np.concatenate([W.ravel(), b])


def unpack(x: np.ndarray, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat vector -> (W (k, m), b (m,)) views."""
    return x[: k * m].reshape(k, m), x[k * m:]
