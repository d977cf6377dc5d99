"""The lecture's regularisers R(W), scaled by lam / k, the bias never penalised.

Every penalty is written as ``R(W) = a1 * sum|W| + a2 * sum W^2`` with

=============  ===================  =========================
``reg``        a1                   a2
=============  ===================  =========================
none           0                    0
l1             lam / k              0
l2             0                    lam / k
elasticnet     l1_ratio lam / k     (1 - l1_ratio) lam / k
=============  ===================  =========================

so one class serves all four; solvers treat the ``a2`` part as smooth (added to the gradient)
and the ``a1`` part through its proximal step (soft-thresholding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import kernels


@dataclass(frozen=True)
class Penalty:
    """R(W) = a1 ||W||_1 + a2 ||W||_2^2 built from the lecture's (reg, lam, l1_ratio, k)."""

    reg: str
    lam: float
    l1_ratio: float
    n_features: int

    @property
    def a1(self) -> float:
        """Weight of the L1 part (lam/k times its share)."""
        share = {"none": 0.0, "l1": 1.0, "l2": 0.0, "elasticnet": self.l1_ratio}[self.reg]
        return share * self.lam / self.n_features

    @property
    def a2(self) -> float:
        """Weight of the squared-L2 part (lam/k times its share)."""
        share = {"none": 0.0, "l1": 0.0, "l2": 1.0, "elasticnet": 1.0 - self.l1_ratio}[self.reg]
        return share * self.lam / self.n_features

    @property
    def smooth(self) -> bool:
        """True when R is differentiable (no L1 part), so smooth solvers apply."""
        return self.a1 == 0.0

    def value(self, W: np.ndarray) -> float:
        """R(W)."""
        out = 0.0
        if self.a1:
            out += self.a1 * float(np.abs(W).sum())
        if self.a2:
            out += self.a2 * float(np.vdot(W, W))
        return out

    def smooth_value(self, W: np.ndarray) -> float:
        """The differentiable part a2 ||W||^2."""
        return self.a2 * float(np.vdot(W, W)) if self.a2 else 0.0

    def add_smooth_grad(self, W: np.ndarray, G_out: np.ndarray) -> None:
        """G_out += gradient of a2 ||W||^2."""
        if self.a2:
            G_out += (2.0 * self.a2) * W

    def prox_l1(self, W_out: np.ndarray, step: float) -> None:
        """Proximal step of the L1 part only (the smooth part is handled by the gradient)."""
        if self.a1:
            kernels.prox_l1(W_out, step * self.a1)

    def prox(self, W_out: np.ndarray, step: float) -> None:
        """Proximal step of the whole R with step size ``step``, in place (the spec's table)."""
        kernels.prox_elasticnet(W_out, step * self.a1, 2.0 * step * self.a2)

    def subgrad_residual(self, W: np.ndarray, G: np.ndarray) -> float:
        """Max-norm of the minimal-norm subgradient of L + R, given G = grad of L + a2||W||^2."""
        if not self.a1:
            return float(np.abs(G).max(initial=0.0))
        r = np.where(W != 0, G + self.a1 * np.sign(W),
                     np.sign(G) * np.maximum(np.abs(G) - self.a1, 0.0))
        return float(np.abs(r).max(initial=0.0))
