"""Centring and scaling as an exact change of coordinates (features a user did not standardise).

The bias is unpenalised, so centring is exact: ``X W + b = (X - mu) W + c`` with
``c = b + mu^T W``. Scaling ``W = d V`` is exact too once the penalty is written in V
(``a1 |W_j| = a1 d_j |V_j|``). In the coordinates (V, c) of roughly standardised features the
problem is as well conditioned as on standardised data, so quasi-Newton methods and coordinate
descent on a Gram reach the optimum again when columns have scales of 1e-3 to 1e4 and means far
from zero. X is never copied: (W, b) is mapped to and from (V, c), the gradient back by the
chain rule. The scales ``d`` are powers of two (the maps are exact in floating point), and
columns within a factor of about 1.4 of unit scale and with ``|mean| <= std`` are left alone, so
standardised data take exactly the path they took before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Affine:
    """``W = d V``, ``b = c - mu^T W``: the solver's coordinates (V, c) of (W, b)."""

    mu: np.ndarray  # (k,) centre of each column (0: left alone)
    d: np.ndarray  # (k,) power-of-two scale of each weight (1: left alone)

    @classmethod
    def from_moments(cls, mean: np.ndarray, std: np.ndarray, curvature: float = 1.0,
                     a2: float = 0.0) -> Affine:
        """The map for columns with this mean and standard deviation (estimates suffice).

        ``d_j`` equalises the diagonal of the Hessian, ``curvature var_j + 2 a2`` per weight,
        with the bias's ``curvature``: ``1 / std_j`` without a penalty; a column so small that
        the ridge dominates its curvature keeps (about) its scale.
        """
        std = np.asarray(std, dtype=np.float64)
        ok = np.isfinite(std) & (std > 0)
        d = np.ones_like(std)
        diag = curvature * std[ok] ** 2 + 2.0 * a2
        d[ok] = np.exp2(np.round(0.5 * np.log2(curvature / diag)))
        mean = np.asarray(mean, dtype=np.float64)
        mu = np.where(np.abs(mean) > np.where(ok, std, 0.0), mean, 0.0)
        return cls(mu=mu, d=d)

    @property
    def identity(self) -> bool:
        """True when the map changes nothing (standardised data)."""
        return not self.mu.any() and bool(np.all(self.d == 1.0))

    def to_wb(self, V: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(V, c) -> (W, b)."""
        W = np.ascontiguousarray(self.d[:, None] * V)
        return W, c - self.mu @ W

    def from_wb(self, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) -> (V, c)."""
        return W / self.d[:, None], b + self.mu @ W

    def grad_to_v(self, G: np.ndarray, gb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The gradient (G, gb) in (W, b) as the gradient in (V, c) (chain rule)."""
        return self.d[:, None] * (G - np.outer(self.mu, gb)), gb

    def tol_v(self, tol: float) -> float:
        """A gradient tolerance in (V, c) that guarantees ``tol`` in (W, b).

        ``G_j = gV_j / d_j + mu_j gb``, so ``|gV|, |gc| <= tol_v`` bounds ``|G_j|`` by
        ``tol_v (1 / d_j + |mu_j|)``.
        """
        return tol / max(1.0, float(np.max(1.0 / self.d + np.abs(self.mu), initial=1.0)))

    def matrix(self) -> np.ndarray:
        """J (k+1, k+1) with ``theta = J theta_v`` for theta = (w, b) of one output."""
        k = self.d.shape[0]
        J = np.zeros((k + 1, k + 1))
        J[np.arange(k), np.arange(k)] = self.d
        J[k, :k] = -self.mu * self.d
        J[k, k] = 1.0
        return J


def gram_affine(A: np.ndarray, a2: float = 0.0) -> Affine:
    """The map for the columns whose Gram ``[X 1]^T [X 1] / n`` is A (exact means), with the
    ridge ``a2 |W|^2`` next to the loss ``theta^T A theta``."""
    k = A.shape[0] - 1
    mean = A[k, :k] / A[k, k]
    var = np.diag(A)[:k] / A[k, k] - mean * mean
    return Affine.from_moments(mean, np.sqrt(np.maximum(var, 0.0)), 1.0, 0.5 * a2 / A[k, k])


def centring(affine: Affine) -> Affine:
    """Its centring alone (for coordinate descent, which is invariant to scaling)."""
    return Affine(mu=affine.mu, d=np.ones_like(affine.d))


class InCoordinates:
    """A :class:`Problem` seen in the coordinates (V, c) of an :class:`Affine` map.

    It answers what the Newton-type loops ask (``f_grad``, ``hessp``, ``F_from_f``,
    ``residual``, ``record``, ``check_separable``, ``result``) with V and c in, and the
    residual, the history and the result in (W, b), so the optimality test and the verdict
    stay the issue's: the max-norm of the minimal subgradient in (W, b). ``l1`` is the L1
    weight per coordinate of V (``a1 d_j``). ``hess`` gives the Hessian products in (W, b)
    (the problem itself, or a sample of rows).
    """

    def __init__(self, P, A: Affine, hess=None):
        self.P, self.A, self.hess = P, A, P if hess is None else hess
        self.pen, self.seed, self.tol, self.max_iter = P.pen, P.seed, P.tol, P.max_iter
        self.l1 = P.pen.a1 * A.d[:, None]
        # Unpenalised softmax is flat along W + u 1^T, b + t 1 (any coordinates): gradients and
        # products have no component along it in exact arithmetic; drop the rounding's.
        self.flat = P.obj.model == "softmax" and not P.pen.a1 and not P.pen.a2

    def _project(self, V, c):
        if not self.flat:
            return V, c
        return V - V.mean(axis=1, keepdims=True), c - c.mean()

    def with_hessian(self, hess) -> InCoordinates:
        """The same view with Hessian products from ``hess``."""
        return InCoordinates(self.P, self.A, hess)

    def f_grad(self, V, c, G_out, gb_out) -> float:
        W, b = self.A.to_wb(V, c)
        G, gb = np.empty_like(W), np.empty_like(b)
        f = self.P.f_grad(W, b, G, gb)
        G_out[...], gb_out[...] = self._project(*self.A.grad_to_v(G, gb))
        return f

    def hessp(self, V, c, U, uc, H_out, hb_out) -> None:
        W, b = self.A.to_wb(V, c)
        Wu, bu = self.A.to_wb(U, uc)  # linear: maps directions too
        H, hb = np.empty_like(W), np.empty_like(b)
        self.hess.hessp(W, b, Wu, bu, H, hb)
        H_out[...], hb_out[...] = self._project(*self.A.grad_to_v(H, hb))

    def F_from_f(self, f: float, V) -> float:
        return self.P.F_from_f(f, self.A.d[:, None] * V)

    def _grad_wb(self, GV, gc):
        return GV / self.A.d[:, None] + np.outer(self.A.mu, gc), gc

    def residual(self, V, c, GV, gc) -> float:
        W, b = self.A.to_wb(V, c)
        return self.P.residual(W, b, *self._grad_wb(GV, gc))

    def record(self, F: float, V, c) -> None:
        self.P.record(F, *self.A.to_wb(V, c))

    def check_separable(self, it: int, V, c, every: int = 10) -> bool:
        return self.P.check_separable(it, *self.A.to_wb(V, c), every=every)

    def result(self, solver: str, V, c, n_iter: int, converged: bool, criterion: str):
        return self.P.result(solver, *self.A.to_wb(V, c), n_iter, converged, criterion)
