"""Every solver's options as one dataclass each: the Hydra schema, the API's checks, the docs.

``name``, ``tol`` and ``max_iter`` are common to all (``fit`` takes them as its own keywords);
the rest are the solver's own keyword arguments, and a solver function takes exactly those.
Each field's ``metadata`` says what values it allows (``check_value`` reads it), so the
Python API and the command line accept the same values and reject the rest with one message.

Plain dataclasses (no omegaconf import): ``MISSING`` is OmegaConf's marker string ``"???"``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

MISSING = "???"  # omegaconf.MISSING, without importing omegaconf here

# metadata kinds: what a value must be (checked by check_value)
POSITIVE_INT = {"kind": "int", "min": 1}
POSITIVE_FLOAT = {"kind": "float", "gt": 0.0}
OPTIONAL_POSITIVE_INT = {"kind": "int", "min": 1, "optional": True}
OPTIONAL_POSITIVE_FLOAT = {"kind": "float", "gt": 0.0, "optional": True}
BOOL = {"kind": "bool"}


@dataclass
class SolverConfig:
    """Options every solver takes; subclasses add their own (passed on as solver options)."""

    name: str = MISSING
    tol: float = field(default=1e-7, metadata=POSITIVE_FLOAT)  # max-norm of the (prox) gradient
    max_iter: int = field(default=1000, metadata=POSITIVE_INT)


@dataclass
class AGDConfig(SolverConfig):
    step: float | None = field(default=None, metadata=OPTIONAL_POSITIVE_FLOAT)  # None: 1 / L


@dataclass
class GDConfig(AGDConfig):
    # bb (Barzilai-Borwein, non-monotone) or backtracking (monotone)
    step_rule: str = field(default="bb",
                           metadata={"kind": "str", "choices": ("bb", "backtracking")})
    memory: int = field(default=10, metadata=POSITIVE_INT)  # values of F the bb rule remembers


@dataclass
class SGDConfig(SolverConfig):
    max_iter: int = field(default=100, metadata=POSITIVE_INT)  # epochs
    batch_size: int = field(default=256, metadata=POSITIVE_INT)
    lr: float | None = field(default=None, metadata=OPTIONAL_POSITIVE_FLOAT)  # None: 1 / L
    variance_reduction: bool = field(default=True, metadata=BOOL)  # SVRG: exact optimum


@dataclass
class NewtonConfig(SolverConfig):
    max_cg: int = field(default=50, metadata=POSITIVE_INT)  # CG steps per Newton step
    # Hessian rows; None: all below 2e5 rows, else n / 20
    hessian_sample: int | None = field(default=None, metadata=OPTIONAL_POSITIVE_INT)


@dataclass
class LBFGSConfig(SolverConfig):
    memory: int = field(default=10, metadata=POSITIVE_INT)


@dataclass
class SplitLBFGSConfig(SolverConfig):
    memory: int = field(default=10, metadata=POSITIVE_INT)


@dataclass
class ProxNewtonConfig(SolverConfig):
    # rows of the subsampled Hessian; None: n/8 within fixed bounds
    sample: int | None = field(default=None, metadata=OPTIONAL_POSITIVE_INT)
    max_sweeps: int = field(default=1000, metadata=POSITIVE_INT)  # CD sweeps per Newton step


COMMON = ("name", "tol", "max_iter")


def _describe(meta: dict[str, Any]) -> str:
    kind = meta["kind"]
    if kind == "str":
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if kind == "bool":
        return "true or false"
    what = "an integer" if kind == "int" else "a finite number"
    bound = (f" >= {meta['min']}" if "min" in meta else f" > {meta['gt']:g}" if "gt" in meta
             else "")
    return what + bound + (" (or None)" if meta.get("optional") else "")


def check_value(name: str, value: Any, meta: dict[str, Any]) -> Any:
    """``value`` if it is allowed for the option ``name`` described by ``meta``; else raise.

    ``TypeError`` for a value of the wrong type (a string where a number belongs, 1.5 for an
    integer, a bool for a number), ``ValueError`` for one out of range. Ints are accepted
    where floats belong and returned as float.
    """
    if not meta:
        return value
    kind = meta["kind"]
    if value is None:
        if meta.get("optional"):
            return None
        raise TypeError(f"{name}=None is not allowed; allowed: {_describe(meta)}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{name}={value!r} must be true or false")
        return value
    if kind == "str":
        if value not in meta["choices"]:
            raise ValueError(f"{name}={value!r} is not allowed; allowed: {_describe(meta)}")
        return value
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "int" and not is_int:
        raise TypeError(f"{name}={value!r} must be an integer (got {type(value).__name__}); "
                        f"allowed: {_describe(meta)}")
    if kind == "float" and not is_real:
        raise TypeError(f"{name}={value!r} must be a number (got {type(value).__name__}); "
                        f"allowed: {_describe(meta)}")
    value = int(value) if kind == "int" else float(value)
    if kind == "float" and not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not finite; allowed: {_describe(meta)}")
    if ("min" in meta and value < meta["min"]) or ("gt" in meta and not value > meta["gt"]):
        raise ValueError(f"{name}={value!r} is out of range; allowed: {_describe(meta)}")
    return value
