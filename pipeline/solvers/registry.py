"""The solver registry: one entry per solver, the one list every other part reads.

An entry carries the function, its options dataclass (the same one the Hydra schema uses), and
the models, penalties and backends it supports. ``fit`` checks options against it, the CLI
schema registers its dataclasses, ``allowed_solvers`` and the error messages read it, and the
README's solver table is made from it (``solver_table``).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..choices import BACKENDS, MODELS, REGS, SMOOTH_REGS
from . import options as opt
from ._problem import FitResult
from .first_order import agd, gd, sgd
from .linear_direct import cd, closed_form
from .prox_newton import prox_newton
from .second_order import SAMPLE_FROM, lbfgs, newton
from .split_lbfgs import split_lbfgs


class IgnoredParameterWarning(UserWarning):
    """A parameter was given that has no effect in the chosen combination."""


@dataclass(frozen=True)
class SolverSpec:
    """What one solver is, takes and supports."""

    name: str
    fn: Callable[..., FitResult]
    options: type[opt.SolverConfig]
    summary: str
    models: tuple[str, ...] = MODELS
    regs: tuple[str, ...] = REGS
    backends: tuple[str, ...] = BACKENDS

    @property
    def option_fields(self) -> dict[str, Any]:
        """The solver's own options (beyond name, tol, max_iter): name -> dataclass field."""
        return {f.name: f for f in fields(self.options) if f.name not in opt.COMMON}

    def unsupported(self, model: str, reg: str, backend: str) -> str | None:
        """Why this solver cannot minimise ``model`` + ``reg`` on ``backend``; None if it can."""
        if model not in self.models:
            return f"is for model={' or '.join(self.models)} only"
        if reg not in self.regs:
            return "needs a smooth objective (reg none or l2)"
        if backend not in self.backends:
            return f"runs on backend={' or '.join(self.backends)} only"
        return None


_CPU = ("cpu",)
# dask: the solvers that need only full passes and one fixed row sample (sgd's mini-batches
# would be a round trip to the cluster each).
_NOT_DASK = ("cpu", "cuda")
_CPU_DASK = ("cpu", "dask")
SOLVERS: dict[str, SolverSpec] = {s.name: s for s in (
    SolverSpec("gd", gd, opt.GDConfig, "proximal gradient descent (Barzilai-Borwein steps)"),
    SolverSpec("agd", agd, opt.AGDConfig, "FISTA with backtracking and adaptive restart"),
    SolverSpec("sgd", sgd, opt.SGDConfig, "mini-batch proximal SGD, SVRG by default",
               backends=_NOT_DASK),
    SolverSpec("lbfgs", lbfgs, opt.LBFGSConfig, "scipy L-BFGS-B on the fused kernel",
               regs=SMOOTH_REGS),
    SolverSpec("split_lbfgs", split_lbfgs, opt.SplitLBFGSConfig,
               "L-BFGS-B on W = U - V (L1 as bounds)"),
    SolverSpec("newton", newton, opt.NewtonConfig, "Newton-CG, subsampled Hessian",
               regs=SMOOTH_REGS),
    SolverSpec("prox_newton", prox_newton, opt.ProxNewtonConfig,
               "proximal Newton, subsampled Hessian", backends=_CPU_DASK),
    SolverSpec("cd", cd, opt.SolverConfig, "coordinate descent on the Gram matrix",
               models=("linear",), backends=_CPU_DASK),
    SolverSpec("closed_form", closed_form, opt.SolverConfig, "normal equations, one Gram pass",
               models=("linear",), regs=SMOOTH_REGS, backends=_CPU_DASK),
)}
SOLVER_NAMES = ("auto", *SOLVERS)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}={value!r} must be a string; choose one of {', '.join(allowed)}")
    if value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name}={value!r} is not known{hint}; choose one of "
                         f"{', '.join(allowed)}")


def allowed_solvers(model: str, reg: str, backend: str = "cpu") -> list[str]:
    """Solvers that can minimise ``model`` with ``reg`` on ``backend`` (``auto`` always can)."""
    return ["auto"] + [s.name for s in SOLVERS.values()
                       if s.unsupported(model, reg, backend) is None]


def check_compatibility(model: str, reg: str, solver: str, backend: str = "cpu") -> None:
    """Raise ``ValueError`` when ``solver`` cannot minimise ``model`` + ``reg`` on ``backend``."""
    _choice("model", model, MODELS)
    _choice("reg", reg, REGS)
    _choice("solver", solver, SOLVER_NAMES)
    _choice("backend", backend, BACKENDS)
    why = None if solver == "auto" else SOLVERS[solver].unsupported(model, reg, backend)
    if why is not None:
        raise ValueError(f"solver={solver!r} {why}; for model={model!r} with reg={reg!r} "
                         f"on backend={backend!r} use one of: "
                         f"{', '.join(allowed_solvers(model, reg, backend))}")


def choose_auto(model: str, reg: str, n_samples: int, n_features: int,
                backend: str = "cpu", sparse: bool = False) -> str:
    """The fastest correct solver for the problem's shape (see bench/solvers.py).

    Linear: one Gram pass, then work independent of n (closed form, or CD for L1) while the
    (k+1)^2 Gram is cheap; otherwise FISTA. Binary logistic: proximal Newton with a subsampled
    (k+1)^2 Hessian (about one pass per iteration, a handful of iterations, any reg). Other
    smooth classifiers: L-BFGS on the fused kernel, or from SAMPLE_FROM rows Newton-CG with a
    subsampled Hessian (10-13 pass-equivalents where L-BFGS needs 30-40). With an L1 part:
    L-BFGS-B on the split W = U - V (a few hundred passes where FISTA needs thousands), or from
    SAMPLE_FROM rows proximal Newton on Hessian-vector products of a sample (22-58 there).
    A sparse X: a pass costs only its non-zeros, so the (k+1)^2 work of a Gram or of binary
    proximal Newton's Hessian dominates (at 2e4 x 2e3, 33 non-zeros a row, logistic L2:
    proximal Newton 259 s, 14 of every 19 in coordinate descent on its Hessian, against 0.45 s
    for Newton-CG): Gram solvers only for linear up to SPARSE_GRAM_FEATURES, else Newton-CG
    below SAMPLE_FROM rows (full Hessian) and L-BFGS from there (smooth; at 2e5 x 2e4 logistic
    L2 Newton-CG's default n/20-row Hessian sample took 74 passes to 1e-6 where L-BFGS took 29
    and Newton on all rows 25: a sample misses the curvature of rare columns), or split
    L-BFGS-B / proximal Newton on Hessian products (with an L1 part).
    """
    if sparse and backend == "cpu":
        return _choose_sparse(model, reg, n_samples, n_features)
    smooth = reg in SMOOTH_REGS
    if backend == "cuda":  # data on the device: the methods that only ask for loss and gradient
        return "lbfgs" if smooth else "split_lbfgs"
    # cpu, and dask: a pass there costs a round trip too, so the fewest passes win all the more
    # (the same choices; the Gram and Hessian samples are reductions on the workers).
    if model == "linear" and n_features <= 4096:
        return "closed_form" if smooth else "cd"
    if model == "logistic" and n_features <= 2048:
        return "prox_newton"
    many = n_samples >= SAMPLE_FROM
    if not smooth:
        return "prox_newton" if many else "split_lbfgs"
    return "newton" if many else "lbfgs"


SPARSE_GRAM_FEATURES = 1024  # linear on a sparse X: closed form / CD on the Gram up to here


def _choose_sparse(model: str, reg: str, n_samples: int, n_features: int) -> str:
    """``auto`` for a sparse X on the CPU (see :func:`choose_auto`)."""
    smooth = reg in SMOOTH_REGS
    if model == "linear" and n_features <= SPARSE_GRAM_FEATURES:
        return "closed_form" if smooth else "cd"
    if smooth:  # Newton's n/20-row Hessian sample misses rare columns: L-BFGS from there
        return "newton" if n_samples < SAMPLE_FROM else "lbfgs"
    # binary prox_newton forms the (k+1)^2 Hessian; with several outputs it uses products
    many = n_samples >= SAMPLE_FROM and model != "logistic"
    return "prox_newton" if many else "split_lbfgs"


# Keywords people reach for that this API does not have (yet): say so instead of "unknown".
NOT_YET = {
    "warm_start": "warm starts are not supported yet (issue 12: regularisation paths)",
    "fit_intercept": "the bias is always fitted and never penalised (the lecture's model)",
}


def _unknown(solver: str, names: list[str], allowed: list[str]) -> TypeError:
    known = ", ".join(allowed) if allowed else "none"
    parts = []
    for name in names:
        if name in NOT_YET:
            parts.append(f"{name!r}: {NOT_YET[name]}")
            continue
        close = difflib.get_close_matches(name, allowed + list(opt.COMMON[1:]) + ["seed"], n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return TypeError(f"fit() got unknown option(s) for solver={solver!r}: {'; '.join(parts)}. "
                     f"Options of {solver}: {known} (besides tol, max_iter, seed)")


def check_solver_options(solver: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` checked against the options of ``solver`` (or of any solver, for ``auto``).

    Raises ``TypeError`` for an option the solver does not define (naming it and listing
    those it does) or a value of the wrong type, ``ValueError`` for one out of range.
    Returns the checked values.
    """
    if solver == "auto":
        allowed = {n: f for s in SOLVERS.values() for n, f in s.option_fields.items()}
    else:
        allowed = SOLVERS[solver].option_fields
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise _unknown(solver, unknown, sorted(allowed))
    return {k: opt.check_value(k, v, allowed[k].metadata) for k, v in given.items()}


def options_for(solver: str, checked: Mapping[str, Any], asked: str) -> dict[str, Any]:
    """The options of ``checked`` that ``solver`` (what ``asked`` resolved to) uses.

    Options given under ``solver="auto"`` that the chosen solver does not take have no effect:
    they are dropped with one ``IgnoredParameterWarning`` naming them.
    """
    own = SOLVERS[solver].option_fields
    dropped = sorted(k for k in checked if k not in own)
    if dropped:
        warnings.warn(f"solver={asked!r} chose {solver!r}, which does not use "
                      f"{', '.join(dropped)}: ignored (name the solver to use them)",
                      IgnoredParameterWarning, stacklevel=3)
    return {k: v for k, v in checked.items() if k in own}


def solver_table() -> str:
    """The README's solver table (Markdown), made from the registry."""
    rows = ["| solver | what | models | reg | backends | options |", "|---" * 6 + "|"]
    for s in SOLVERS.values():
        models = "all" if s.models == MODELS else ", ".join(s.models)
        regs = "all" if s.regs == REGS else ", ".join(s.regs)
        opts = ", ".join(f"`{n}`" for n in s.option_fields) or "-"
        rows.append(f"| `{s.name}` | {s.summary} | {models} | {regs} | "
                    f"{', '.join(s.backends)} | {opts} |")
    return "\n".join(rows)
