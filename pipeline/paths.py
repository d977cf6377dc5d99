"""Regularisation paths: one warm-started fit per lambda, from lam_max down a geometric grid.

``lam_max`` is exact (``shared/spec/objectives.md``, "The smallest lambda with W = 0"): at the
intercept-only optimum ``b0`` (a closed form per model) the gradient ``G0 = dL/dW`` decides
whether ``W = 0`` is optimal, so ``lam_max = k max|G0| / l1_ratio``. Along the path, penalties
with an L1 part screen features with the sequential strong rule (Tibshirani et al., 2012): a
feature whose gradient at the last lambda is below ``2 a1_new - a1_old`` is left out, the fit
runs on the remaining columns only (a copy of them: passes get cheaper as most columns drop),
and a KKT check of every left-out feature on the full data (one pass) brings back any that the
rule got wrong. Each point is then judged on the full problem, to the same ``tol`` as ``fit``.
A linear model on a Gram solver (cd, closed_form; dense float64 X) runs on the sums of
``pipeline.gram_path`` instead: one pass over X forms them, and every point's fit, loss,
gradient and KKT check come from them, with no pass over X.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from kernels.gram import blas_single_thread

from . import gram_path
from .objectives import ArrayObjective, Objective
from .penalties import Penalty
from .solvers import (
    SOLVERS,
    FitResult,
    Problem,
    check_compatibility,
    check_solver_options,
    choose_auto,
    options_for,
)
from .solvers._problem import ConvergenceWarning
from .validation import (
    check_hyperparameters,
    check_targets,
    check_X,
    is_sparse,
    warn_ineffective,
)
from .weights import row_weights

# l2 has no lambda with W = 0: its grid is that of an elastic net with this L1 share (glmnet).
L2_GRID_RATIO = 1e-3


@dataclass
class PathResult:
    """A fit per lambda, largest lambda first. Arrays are stacked over the path's points."""

    model: str
    reg: str
    l1_ratio: float
    lams: np.ndarray          # (n_lams,)
    W: np.ndarray             # (n_lams, k, m)
    b: np.ndarray             # (n_lams, m)
    objective: np.ndarray     # (n_lams,) F at each point
    loss: np.ndarray          # (n_lams,) data loss L
    n_nonzero: np.ndarray     # (n_lams,) non-zero weights
    n_passes: np.ndarray      # (n_lams,) full-pass equivalents spent on the point
    time_s: np.ndarray        # (n_lams,) seconds spent on the point
    residual: np.ndarray      # (n_lams,) optimality residual on the full problem
    converged: np.ndarray     # (n_lams,) bool
    lam_max: float
    solver: str
    classes: np.ndarray | None = None
    dtype: str = "float64"
    warnings: list[str] = field(default_factory=list)

    def at(self, lam: float) -> FitResult:
        """The point of the path at ``lam`` (which must be one of ``lams``) as a FitResult."""
        hits = np.flatnonzero(np.isclose(self.lams, lam, rtol=1e-12, atol=0.0))
        if not len(hits):
            raise ValueError(f"lam={lam!r} is not on the path; its lambdas run from "
                             f"{self.lams[0]:.4g} to {self.lams[-1]:.4g} (PathResult.lams)")
        i = int(hits[0])
        return FitResult(
            W=self.W[i], b=self.b[i], model=self.model, reg=self.reg, lam=float(self.lams[i]),
            l1_ratio=self.l1_ratio, solver=self.solver, objective=float(self.objective[i]),
            loss=float(self.loss[i]), penalty=float(self.objective[i] - self.loss[i]),
            n_iter=0, n_passes=int(round(self.n_passes[i])), time_s=float(self.time_s[i]),
            converged=bool(self.converged[i]), criterion="path",
            residual=float(self.residual[i]), classes=self.classes, dtype=self.dtype)


def intercept_only(model: str, T: np.ndarray, n_outputs: int,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """The bias b0 (m,) minimising L(0, b): a closed form per model (T encoded without the
    weight column; ``weights`` (n,) the rows' weights, whose means these then are)."""
    if model == "softmax":
        freq = np.bincount(T[:, 0].astype(np.intp), weights=weights, minlength=n_outputs)
        return np.log(freq / freq.sum())
    mean = np.average(T, axis=0, weights=weights)
    if model == "linear":
        return mean
    return np.log(mean) - np.log1p(-mean)  # logistic, multilabel, ovr: the share of ones


def data_objective(model: str, X, T: np.ndarray, n_classes: int,
                   sample_weight: np.ndarray | None = None) -> Objective:
    """The in-memory objective for a checked X: sparse (CSR) or dense."""
    if is_sparse(X):
        from .objectives_sparse import SparseObjective

        return SparseObjective(model, X, T, n_classes, sample_weight=sample_weight)
    return ArrayObjective(model, X, T, n_classes, sample_weight=sample_weight)


def lambda_max(objective, reg: str, l1_ratio: float) -> tuple[float, np.ndarray]:
    """(lam_max, b0): the smallest lambda whose optimum has W = 0, and that optimum's bias."""
    if isinstance(objective, gram_path.GramObjective):
        b0 = objective.intercept_only()
    else:
        T, weights = objective.targets()
        b0 = intercept_only(objective.model, T, objective.n_outputs, weights)
    W0 = np.zeros((objective.n_features, objective.n_outputs))
    G0, gb0 = np.empty_like(W0), np.empty_like(b0)
    objective.loss_grad(W0, b0, G0, gb0)
    share = l1_ratio if reg == "elasticnet" else 1.0 if reg == "l1" else L2_GRID_RATIO
    return objective.n_features * float(np.abs(G0).max(initial=0.0)) / share, b0


def grid(lam_max: float, n_lams: int, lam_min_ratio: float) -> np.ndarray:
    """n_lams lambdas from lam_max down to lam_min_ratio * lam_max, evenly spaced in log."""
    return np.geomspace(lam_max, lam_max * lam_min_ratio, n_lams)


def path(X, y, *, model: str, reg: str, n_lams: int = 100, lam_min_ratio: float | None = None,
         lams=None, l1_ratio: float | None = None, solver: str = "auto", tol: float = 1e-7,
         max_iter: int = 1000, seed: int = 0, dtype: str = "float64", screening: bool = True,
         sample_weight=None, class_weight=None, **solver_options) -> PathResult:
    """Warm-started fits of F = L + R over a decreasing grid of lambdas.

    Parameters
    ----------
    X, y, model, solver, tol, max_iter, seed, dtype, solver_options : as for :func:`fit`.
    reg : l1, l2 or elasticnet (a path of ``none`` has one point: use ``fit``).
    n_lams : points of the default grid (ignored when ``lams`` is given).
    lam_min_ratio : the grid's last lambda over lam_max; default 1e-4 when n > k, else 1e-2.
    lams : explicit lambdas (sorted from largest to smallest here).
    l1_ratio : the L1 share of ``elasticnet`` (default 0.5).
    screening : strong-rule screening with a KKT check for penalties with an L1 part.
    sample_weight, class_weight : row and class weights, as for :func:`fit` (lam_max is that
        of the weighted loss).

    Returns
    -------
    PathResult with W, b, F, L, non-zeros, passes, time and residual per lambda.
    """
    if reg == "none":
        raise ValueError("reg='none' has no lambda to vary: use pipeline.fit, or reg=l1, l2 or "
                         "elasticnet for a path")
    ratio, tol, max_iter, seed, checked = check_path_options(
        model, reg, solver, l1_ratio, tol, max_iter, seed, solver_options)
    Xc = check_X(X, dtype, accept_sparse=True)  # sparse: CSR, never densified
    T, classes = check_targets(model, y, Xc.shape[0])
    n, k = Xc.shape
    weights = row_weights(model, sample_weight, class_weight, T, classes)
    if gram_based(model, reg, solver, Xc):  # one pass for the sums, none per point
        objective: Objective = gram_path.objective(Xc, T, weights)
    else:
        objective = data_objective(model, Xc, T, 0 if classes is None else len(classes),
                                   weights)
    lam_max, b0 = lambda_max(objective, reg, ratio)
    lams_ = lambda_grid(lams, lam_max, n_lams, lam_min_ratio, n, k)
    return run_path(objective, reg, ratio, lams_, lam_max, b0, solver, checked, tol, max_iter,
                    seed, screening, classes, dtype)


def check_path_options(model, reg, solver, l1_ratio, tol, max_iter, seed, solver_options):
    """(l1_ratio, tol, max_iter, seed, solver options) checked as :func:`path` takes them."""
    check_compatibility(model, reg, solver)
    _, ratio, tol, max_iter, seed = check_hyperparameters(
        0.0, 0.5 if l1_ratio is None else l1_ratio, tol, max_iter, seed)
    warn_ineffective(reg, 1.0, l1_ratio is not None)
    if reg == "elasticnet" and ratio == 0.0:
        raise ValueError("l1_ratio=0 is the l2 penalty: use reg='l2' for its path")
    return ratio, tol, max_iter, seed, check_solver_options(solver, solver_options)


def gram_based(model: str, reg: str, solver: str, X) -> bool:
    """True when the path runs on the sums of ``pipeline.gram_path``: linear, dense float64
    X, and a Gram solver (cd, closed_form; ``auto`` when it picks one)."""
    if model != "linear" or is_sparse(X) or X.dtype != np.float64:
        return False
    n, k = X.shape
    return solver in ("cd", "closed_form") or (
        solver == "auto" and choose_auto("linear", reg, n, k) in ("cd", "closed_form"))


def run_path(objective, reg, ratio, lams_, lam_max, b0, solver, checked, tol, max_iter, seed,
             screening, classes, dtype) -> PathResult:
    """The warm-started fits of a checked problem over the lambdas ``lams_`` (largest first)."""
    run = _PathRun(objective, reg, ratio, solver, checked, tol, max_iter, seed,
                   screening and reg != "l2")
    points = [run.point(float(lam), b0) for lam in lams_]
    missed = sum(not p.converged for p in points)
    if missed:
        warnings.warn(f"{missed} of {len(points)} path points stopped above tol={tol:g} (see "
                      "PathResult.converged and .residual): " + "; ".join(run.warnings[:2]),
                      ConvergenceWarning, stacklevel=3)
    stack = {name: np.array([getattr(p, name) for p in points]) for name in
             ("W", "b", "objective", "loss", "n_nonzero", "n_passes", "time_s", "residual",
              "converged")}
    return PathResult(model=objective.model, reg=reg, l1_ratio=ratio, lams=lams_,
                      lam_max=lam_max, solver=", ".join(sorted(run.solvers)) or "none",
                      classes=classes, dtype=dtype, warnings=run.warnings, **stack)


def lambda_grid(lams, lam_max: float, n_lams: int, lam_min_ratio: float | None, n: int,
                k: int) -> np.ndarray:
    """``lams`` checked and sorted from largest to smallest, or the default grid from
    ``lam_max`` (``lam_min_ratio`` defaults to 1e-4 when n > k, else 1e-2, as in glmnet)."""
    if lams is not None:
        out = np.sort(np.asarray(lams, dtype=np.float64).ravel())[::-1]
        if out.size == 0 or not np.all(np.isfinite(out)) or out[-1] <= 0.0:
            raise ValueError("lams must be a non-empty list of finite lambdas > 0")
        return np.ascontiguousarray(out)
    if not isinstance(n_lams, int | np.integer) or isinstance(n_lams, bool) or n_lams < 1:
        raise ValueError(f"n_lams={n_lams!r} must be an integer >= 1")
    ratio = (1e-4 if n > k else 1e-2) if lam_min_ratio is None else lam_min_ratio
    if not (isinstance(ratio, int | float) and 0.0 < ratio < 1.0):
        raise ValueError(f"lam_min_ratio={lam_min_ratio!r} must be a number in (0, 1)")
    if lam_max == 0.0:
        raise ValueError("every gradient at the intercept-only fit is 0 (the features carry "
                         "no signal): no lambda grid exists; give lams explicitly")
    return grid(lam_max, n_lams, float(ratio))


@dataclass
class _Point:
    W: np.ndarray
    b: np.ndarray
    objective: float
    loss: float
    n_nonzero: int
    n_passes: float
    time_s: float
    residual: float
    converged: bool


class _PathRun:
    """The state carried from one lambda to the next: the warm start and the last gradient."""

    def __init__(self, objective, reg: str, l1_ratio: float, solver: str,
                 checked: dict, tol: float, max_iter: int, seed: int, screening: bool):
        self.obj, self.reg, self.l1_ratio = objective, reg, l1_ratio
        self.solver, self.checked = solver, checked
        self.sparse = is_sparse(getattr(objective, "X", None))
        k, m = objective.n_features, objective.n_outputs
        # Linear models on the Gram (cd, closed form) pay one pass for it over the whole path
        # (the objective keeps it); screening would copy columns and form Grams anew.
        on_gram = objective.model == "linear" and (
            solver in ("cd", "closed_form")
            or (solver == "auto" and choose_auto("linear", reg, objective.n_samples, k,
                                                 sparse=self.sparse)
                in ("cd", "closed_form")))
        self.tol, self.max_iter, self.seed = tol, max_iter, seed
        self.screening = screening and not on_gram
        self.W, self.b = np.zeros((k, m)), np.zeros(m)
        self.G: np.ndarray | None = None  # gradient of L at the last point (full problem)
        self.a1_prev = np.inf
        self.solvers: set[str] = set()
        self.warnings: list[str] = []
        self._sub: tuple[np.ndarray, Objective] | None = None  # the last working set's copy

    def point(self, lam: float, b0: np.ndarray) -> _Point:
        t0 = time.perf_counter()
        pen = Penalty(self.reg, lam, self.l1_ratio, self.obj.n_features)
        cost, rows0 = 0.0, self.obj.counter.rows  # the full objective's rows: counted below
        if self.G is None:  # the first point: start from the intercept-only optimum
            self.b = b0.copy()
            self.G = self._gradient(self.W, self.b)[1]
        active = self._screen(pen.a1)
        while True:
            spent, res = self._solve(pen, active)
            cost += spent
            if res is not None and active.all() and res.gradient is not None:
                # every column was fitted: the solver's final evaluation is the full problem's
                loss, G, residual = res.loss, res.gradient, res.residual
                break
            loss, G, gb = self._gradient(self.W, self.b)
            violators = np.flatnonzero(~active & (np.abs(G).max(axis=1, initial=0.0)
                                                  > pen.a1 + 0.5 * self.tol))
            if not len(violators):
                Gf = G + 2.0 * pen.a2 * self.W if pen.a2 else G
                residual = max(pen.subgrad_residual(self.W, Gf),
                               float(np.abs(gb).max(initial=0.0)))
                break
            active[violators] = True  # the strong rule was wrong for these: fit them too
        self.G, self.a1_prev = G, pen.a1
        cost += (self.obj.counter.rows - rows0) / self.obj.n_samples  # a GramObjective: none
        return _Point(W=self.W.copy(), b=self.b.copy(), objective=loss + pen.value(self.W),
                      loss=loss, n_nonzero=int(np.count_nonzero(self.W)), n_passes=cost,
                      time_s=time.perf_counter() - t0, residual=residual,
                      converged=residual <= self.tol or (
                          res is not None and res.converged and res.gradient is G
                          and res.criterion == "machine_precision"))

    def _gradient(self, W, b) -> tuple[float, np.ndarray, np.ndarray]:
        """L and its gradient on the full problem (one pass; none on a GramObjective)."""
        G, gb = np.empty_like(W), np.empty_like(b)
        return self.obj.loss_grad(W, b, G, gb), G, gb

    def _screen(self, a1: float) -> np.ndarray:
        """Features kept for this lambda: all without screening; else the sequential strong
        rule's survivors (at the first point: those whose gradient exceeds a1) and every
        feature already non-zero. The KKT check after the fit corrects the rule's mistakes.

        While W = 0 satisfies the KKT conditions (every |gradient| within a1, up to the
        rounding of lam_max's own ``k g / share``), no column is kept whatever the screening:
        the point is the intercept-only optimum exactly, not a solver's rounding of it."""
        assert self.G is not None
        g = np.abs(self.G).max(axis=1, initial=0.0)
        if a1 > 0.0 and not self.W.any() and g.max(initial=0.0) <= a1 * (1.0 + 1e-14):
            return np.zeros(self.obj.n_features, dtype=bool)
        if not self.screening:
            return np.ones(self.obj.n_features, dtype=bool)
        keep = g >= 2.0 * a1 - self.a1_prev if np.isfinite(self.a1_prev) else g > a1
        return keep | np.any(self.W != 0.0, axis=1)

    def _solve_on_sums(self, sub, pen: Penalty) -> FitResult:
        """Coordinate descent on a GramObjective's own sums (no pass, no correction)."""
        self.solvers.add("cd")
        W, b, loss, G, gb, residual, sweeps, criterion = sub.solve(pen, self.W, self.b,
                                                                   self.tol, self.max_iter)
        ok = residual <= self.tol or (criterion == "machine_precision"
                                      and residual <= 100 * self.tol)
        if not ok:
            msg = (f"cd stopped after {sweeps} sweeps with residual {residual:.3g} > "
                   f"tol={self.tol:g}; " + ("raise max_iter" if criterion == "max_iter" else
                                            "rounding stops it there: standardise the "
                                            "features or loosen tol"))
            if msg not in self.warnings:
                self.warnings.append(msg)
        self.W[:], self.b = W, b
        return FitResult(W=W, b=b, model="linear", reg=self.reg, lam=pen.lam,
                         l1_ratio=self.l1_ratio, solver="cd", objective=loss + pen.value(W),
                         loss=loss, penalty=pen.value(W), n_iter=sweeps, n_passes=0,
                         time_s=0.0, converged=ok, criterion=criterion, residual=residual,
                         gradient=G)

    def _solve(self, pen: Penalty, active: np.ndarray) -> tuple[float, FitResult | None]:
        """Fit on the active columns from the warm start; returns its full-pass equivalents
        and the solver's result (None when no column is active)."""
        cols = np.flatnonzero(active)
        if not len(cols):  # W = 0: the intercept alone, which the KKT check then confirms
            self.W[:] = 0.0
            return 0.0, None
        obj = self.obj
        if len(cols) == obj.n_features:
            sub = obj
        elif self._sub is not None and np.array_equal(self._sub[0], cols):
            sub = self._sub[1]  # the same working set as the last point: its copy again
        else:
            sub = obj.on_columns(cols)
            self._sub = (cols, sub)
        if isinstance(sub, gram_path.GramObjective) and self.solver in ("auto", "cd") and (
                pen.a1 or self.solver == "cd"):
            return 0.0, self._solve_on_sums(sub, pen)
        rows0 = sub.counter.rows
        chosen = (choose_auto(obj.model, self.reg, obj.n_samples, len(cols), sparse=self.sparse)
                  if self.solver == "auto" else self.solver)
        self.solvers.add(chosen)
        with warnings.catch_warnings(record=True) as caught, blas_single_thread():
            warnings.simplefilter("always")  # BLAS on one thread: as in pipeline.fit
            options = options_for(chosen, self.checked, self.solver)
            problem = Problem(sub, pen, self.tol, self.max_iter, seed=self.seed)
            res = SOLVERS[chosen].fn(problem, np.ascontiguousarray(self.W[cols]),
                                     self.b.copy(), **options)
        for w in caught:
            if str(w.message) not in self.warnings:
                self.warnings.append(str(w.message))
        self.W[:] = 0.0
        self.W[cols] = res.W
        self.b = np.array(res.b, dtype=np.float64)
        if sub is obj:
            return 0.0, res  # counted on obj's counter by point()
        share = (len(cols) + 1) / (obj.n_features + 1)
        return (sub.counter.rows - rows0) / obj.n_samples * share, res
