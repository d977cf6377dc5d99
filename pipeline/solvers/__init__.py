"""Solver registry: the config name is the one identifier (config, registry, MLflow, tests)."""

from __future__ import annotations

from collections.abc import Callable

from ..validation import allowed_solvers
from ._problem import Callback, FitResult, Problem, SeparableDataWarning
from .first_order import agd, gd, sgd
from .linear_direct import cd, closed_form
from .prox_newton import prox_newton
from .second_order import SAMPLE_FROM, lbfgs, newton
from .split_lbfgs import split_lbfgs

SOLVERS: dict[str, Callable[..., FitResult]] = {
    "gd": gd, "agd": agd, "sgd": sgd, "lbfgs": lbfgs, "split_lbfgs": split_lbfgs,
    "newton": newton, "cd": cd,
    "closed_form": closed_form,
    "prox_newton": prox_newton,
}


def choose_auto(model: str, reg: str, n_samples: int, n_features: int,
                backend: str = "cpu") -> str:
    """The fastest correct solver for the problem's shape (see bench/solvers.py).

    Linear: one Gram pass, then work independent of n (closed form, or CD for L1) while the
    (k+1)^2 Gram is cheap; otherwise FISTA. Binary logistic: proximal Newton with a subsampled
    (k+1)^2 Hessian (about one pass per iteration, a handful of iterations, any reg). Other
    smooth classifiers: L-BFGS on the fused kernel, or from SAMPLE_FROM rows Newton-CG with a
    subsampled Hessian (10-13 pass-equivalents where L-BFGS needs 30-40). With an L1 part:
    L-BFGS-B on the split W = U - V (a few hundred passes where FISTA needs thousands), or from
    SAMPLE_FROM rows proximal Newton on Hessian-vector products of a sample (22-58 there).
    """
    smooth = reg in ("none", "l2")
    if backend != "cpu":  # data on the device: the methods that only ask for loss and gradient
        return "lbfgs" if smooth else "split_lbfgs"
    if model == "linear" and n_features <= 4096:
        return "closed_form" if smooth else "cd"
    if model == "logistic" and n_features <= 2048:
        return "prox_newton"
    many = n_samples >= SAMPLE_FROM
    if not smooth:
        return "prox_newton" if many else "split_lbfgs"
    return "newton" if many else "lbfgs"


__all__ = ["SOLVERS", "Callback", "FitResult", "Problem", "SeparableDataWarning",
           "allowed_solvers", "choose_auto"]
