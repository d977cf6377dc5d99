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

import numpy as np

from ..objectives import Objective
from ..penalties import Penalty

Callback = Callable[[int, float, float, np.ndarray, np.ndarray], None]


class SeparableDataWarning(UserWarning):
    """The classes are linearly separable and nothing bounds W: no finite optimum exists."""


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

    @property
    def n_nonzero(self) -> int:
        """Non-zero weights (the sparsity L1 buys)."""
        return int(np.count_nonzero(self.W))


class Problem:
    """One minimisation of F = L + R: evaluations, history and the stopping bookkeeping."""

    def __init__(self, objective: Objective, penalty: Penalty, tol: float, max_iter: int,
                 callback: Callback | None = None):
        self.obj = objective
        self.pen = penalty
        self.tol = tol
        self.max_iter = int(max_iter)
        self.callback = callback
        self.history: list[float] = []
        self.warnings: list[str] = []
        self.t0 = time.perf_counter()
        self.can_diverge = objective.model != "linear" and penalty.lam == 0.0

    # ------------------------------------------------------------------ evaluations
    def f_grad(self, W, b, G_out, gb_out) -> float:
        """Smooth part f = L + a2||W||^2 and its gradient (one pass)."""
        f = self.obj.loss_grad(W, b, G_out, gb_out)
        self.pen.add_smooth_grad(W, G_out)
        return f + self.pen.smooth_value(W)

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

    # ------------------------------------------------------------------ bookkeeping
    def record(self, F: float, W, b) -> None:
        """Append F to the history and tell the callback ``(step, F, L, W, b)``."""
        self.history.append(float(F))
        if self.callback is not None:
            L = float(F) - self.pen.value(W)
            self.callback(len(self.history), float(F), L, W, b)

    def separated(self, W, b) -> bool:
        """True when (W, b) classifies every training row strictly right (one pass).

        Then scaling W up lowers the loss forever: the data are separable and an unpenalised
        classifier has no finite optimum. Only asked when ``can_diverge``.
        """
        Z = self.obj.decision(W, b)
        T = self.obj.T
        if self.obj.model == "softmax":
            cls = T[:, 0].astype(np.intp)
            true = Z[np.arange(Z.shape[0]), cls]
            Z[np.arange(Z.shape[0]), cls] = -np.inf
            return bool(np.all(true > Z.max(axis=1)))
        margins = np.where(T > 0.5, Z, -Z)
        return bool(np.any(np.all(margins > 0, axis=0)))

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
               **extra) -> FitResult:
        """Final F, L, R at (W, b) measured with one more pass, packed into a FitResult."""
        if not converged and criterion == "max_iter":
            msg = (f"{solver} did not converge in {n_iter} iterations (tol={self.tol:g}); "
                   "raise max_iter or tol")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            self.warnings.append(msg)
        loss = self.obj.loss(W, b)
        pen = self.pen.value(W)
        return FitResult(
            W=W, b=b, model=self.obj.model, reg=self.pen.reg, lam=self.pen.lam,
            l1_ratio=self.pen.l1_ratio, solver=solver, objective=loss + pen, loss=loss,
            penalty=pen, n_iter=n_iter, n_passes=self.obj.n_passes,
            time_s=time.perf_counter() - self.t0, converged=converged, criterion=criterion,
            history=self.history, warnings=self.warnings, **extra)


def pack(W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(W, b) -> one flat vector (for scipy and CG)."""
    return np.concatenate([W.ravel(), b])


def unpack(x: np.ndarray, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat vector -> (W (k, m), b (m,)) views."""
    return x[: k * m].reshape(k, m), x[k * m:]
