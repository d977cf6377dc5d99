"""Input checks that run before any work: clear messages naming the field and the fix.

The data rules here are the only copy: ``pipeline.fit`` and the app's data loading
(``pipeline.data``) both call them, so the API and the CLI accept and reject the same data.
Which solver fits which model, penalty and backend lives in the solver registry
(``pipeline.solvers.registry``); its checks are re-exported here.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from .choices import BACKENDS, DTYPES, MODELS, REGS
from .solvers.registry import (
    SOLVER_NAMES,
    IgnoredParameterWarning,
    _choice,
    allowed_solvers,
    check_compatibility,
)

SOLVERS = SOLVER_NAMES  # every name ``solver=`` accepts
__all__ = ["BACKENDS", "DTYPES", "MODELS", "REGS", "SOLVERS", "allowed_solvers",
           "check_compatibility", "check_hyperparameters", "check_targets", "check_X",
           "warn_ineffective"]


def _real(name: str, value: Any, hint: str) -> float:
    """``value`` as a float; ``TypeError`` naming ``name`` when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number ({hint}); "
                        f"got {type(value).__name__}")
    return float(value)


def _integer(name: str, value: Any, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer ({hint}); "
                        f"got {type(value).__name__}")
    return int(value)


def check_hyperparameters(lam: Any, l1_ratio: Any, tol: Any, max_iter: Any,
                          seed: Any = 0) -> tuple[float, float, float, int, int]:
    """Type and range checks of the scalar settings; returns them as float/int.

    ``TypeError`` for a wrong type (a string where a number belongs, 1.5 iterations),
    ``ValueError`` for a value out of range; each message names the parameter.
    """
    lam = _real("lam", lam, "the lecture's lambda, finite and >= 0")
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam={lam} must be a finite number >= 0 (the lecture's lambda)")
    l1_ratio = _real("l1_ratio", l1_ratio, "the L1 share of elasticnet, in [0, 1]")
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio={l1_ratio} must lie in [0, 1]")
    tol = _real("tol", tol, "the stopping tolerance, > 0")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol={tol} must be a finite number > 0 (e.g. 1e-7)")
    max_iter = _integer("max_iter", max_iter, "iterations, >= 1")
    if max_iter < 1:
        raise ValueError(f"max_iter={max_iter} must be >= 1")
    seed = _integer("seed", seed, "seeds every random choice, >= 0")
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0")
    return lam, l1_ratio, tol, max_iter, seed


def warn_ineffective(reg: str, lam: float, l1_ratio_given: bool) -> None:
    """One ``IgnoredParameterWarning`` per parameter that has no effect with ``reg``."""
    if l1_ratio_given and reg != "elasticnet":
        warnings.warn(f"l1_ratio has no effect with reg={reg!r} (only reg='elasticnet' mixes "
                      "L1 and L2): ignored", IgnoredParameterWarning, stacklevel=3)
    if lam and reg == "none":
        warnings.warn(f"lam={lam:g} has no effect with reg='none': ignored (choose reg='l1', "
                      "'l2' or 'elasticnet' to penalise)", IgnoredParameterWarning,
                      stacklevel=3)


def _where_not_finite(A: np.ndarray, name: str) -> str:
    bad = ~np.isfinite(A)
    if A.ndim == 1:
        rows = np.flatnonzero(bad)
        return f"{name} has {rows.size} NaN/inf value(s) at rows {rows[:10].tolist()}"
    rows = np.flatnonzero(bad.any(axis=1))
    cols = np.flatnonzero(bad.any(axis=0))
    return (f"{name} has {int(bad.sum())} NaN/inf value(s) in rows {rows[:10].tolist()}"
            f"{' ...' if rows.size > 10 else ''} and columns {cols[:10].tolist()}"
            f"{' ...' if cols.size > 10 else ''}; impute or drop them first")


def _not_an_array(X: Any, name: str) -> None:
    """Inputs ``np.asarray`` would turn into nonsense: say what they are and what to do."""
    if is_sparse(X):
        raise TypeError(f"{name} is a scipy.sparse matrix ({type(X).__name__}, shape "
                        f"{X.shape}); sparse input is supported by pipeline.fit, predict and "
                        f"decision_function only: pass {name}.toarray() here if it fits in "
                        "memory")
    if hasattr(X, "dtypes") and hasattr(X, "columns"):  # a pandas DataFrame
        for col, dt in zip(X.columns, X.dtypes, strict=True):
            if dt.kind not in "biuf":
                raise TypeError(f"{name} column {col!r} is not numeric (dtype {dt}); encode "
                                "or drop it first (categorical columns are not supported yet)")


def _as_array(X: Any, name: str) -> np.ndarray:
    _not_an_array(X, name)
    try:
        return np.asarray(X)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} is ragged (rows of different lengths) or not array-like: "
                         f"{err}") from None


def is_sparse(X: Any) -> bool:
    """True for a scipy.sparse matrix or array (checked without importing scipy)."""
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


def check_sparse_X(X: Any, dtype: str = "float64") -> Any:
    """Return a scipy.sparse X as CSR with ``dtype`` data: a CSR matrix of that dtype as it is,
    another format (CSC, COO, ...) converted once, another dtype cast once. Never densified.

    Checks the shape (2-D, at least one row and one column), real dtype and finite data.
    """
    _choice("dtype", dtype, DTYPES)
    if len(X.shape) != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty or not 2-D (shape {X.shape}); need at least one row and "
                         "one column")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold real numbers; this sparse matrix has dtype {X.dtype}")
    if X.format != "csr":
        X = X.tocsr()
    if X.dtype != np.dtype(dtype):
        X = X.astype(dtype)
    bad = ~np.isfinite(X.data)
    if bad.any():
        rows = np.unique(np.searchsorted(X.indptr, np.flatnonzero(bad), side="right") - 1)
        raise ValueError(f"X has {int(bad.sum())} NaN/inf stored value(s) in rows "
                         f"{rows[:10].tolist()}{' ...' if rows.size > 10 else ''}; impute or "
                         "drop them first")
    return X


def check_X(X, dtype: str = "float64", accept_sparse: bool = False) -> np.ndarray:
    """Return X as a C-contiguous 2-D float array of ``dtype`` (no copy when it already is).

    ``accept_sparse``: a scipy.sparse X is returned as CSR (:func:`check_sparse_X`) instead of
    raising ``TypeError``.
    """
    _choice("dtype", dtype, DTYPES)
    if accept_sparse and is_sparse(X):
        return check_sparse_X(X, dtype)
    X = _as_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}"
                         + ("; use X.reshape(-1, 1) for a single feature" if X.ndim == 1
                            else ""))
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty (shape {X.shape}); need at least one row and one column")
    if X.dtype.kind not in "biuf":
        what = ("holds None or non-numbers" if X.dtype.kind == "O"
                else f"has dtype {X.dtype}")
        raise TypeError(f"X must be real numbers; it {what}: convert or drop such values")
    X = np.ascontiguousarray(X, dtype=dtype)
    from kernels import all_finite  # lazy: numba is not needed to validate a config

    if not all_finite(X):
        raise ValueError(_where_not_finite(X, "X"))
    return X


def _check_y_values(y: np.ndarray) -> None:
    if y.dtype.kind == "O":
        import pandas as pd  # lazy: only object arrays need it

        missing = np.flatnonzero(pd.isna(y).reshape(len(y), -1).any(axis=1))
        if missing.size:
            raise ValueError(f"y has {missing.size} missing value(s) (None/NaN) at rows "
                             f"{missing[:10].tolist()}; drop or fill them first")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ValueError(_where_not_finite(y.astype(float), "y"))


def _check_multilabel(y: np.ndarray) -> np.ndarray:
    if y.ndim != 2 or y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError(f"multilabel needs y of shape (n, m) with entries 0 or 1; got shape "
                         f"{y.shape}, dtype {y.dtype}")
    T = np.ascontiguousarray(y, dtype=np.float64)
    for c in np.flatnonzero(T.min(axis=0) == T.max(axis=0)):
        # A label that never (or always) occurs pushes its bias to -inf (+inf): no optimum.
        raise ValueError(f"label column {c} of y is constant ({int(T[0, c])} in every row); "
                         "each label needs both 0 and 1: drop that column")
    return T


def check_targets(model: str, y, n_samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate ``y`` for ``model``; return float64 targets (n, m) and the class labels.

    linear: (n,) or (n, m) reals. logistic: two classes (0/1 or any two labels).
    softmax/ovr: at least two classes (any labels; encoded as 0..m-1).
    multilabel: (n, m) of 0/1, every column with both values.
    """
    _choice("model", model, MODELS)
    if y is None:
        raise TypeError("y is None; fit needs the targets (n,) or (n, m)")
    y = _as_array(y, "y")
    if y.ndim == 0 or y.shape[0] != n_samples:
        rows = "a scalar" if y.ndim == 0 else f"{y.shape[0]} rows"
        raise ValueError(f"y has {rows} but X has {n_samples}; they must match")
    if y.size == 0:
        raise ValueError("y is empty")
    _check_y_values(y)
    if model == "linear":
        if y.ndim > 2 or y.dtype.kind not in "biuf":
            raise ValueError(f"linear needs numeric y of shape (n,) or (n, m); got shape "
                             f"{y.shape}, dtype {y.dtype}")
        return np.ascontiguousarray(y.reshape(n_samples, -1), dtype=np.float64), None
    if model == "multilabel":
        return _check_multilabel(y), np.arange(y.shape[1])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{model} needs y of shape (n,) holding class labels; got {y.shape}"
                         + (" (for several 0/1 labels per row use model=multilabel)"
                            if y.ndim == 2 else ""))
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise ValueError(f"{model} needs class labels, but y is continuous (e.g. "
                         f"{y[y != np.round(y)][0]}); use model=linear for regression")
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError:  # mixed label types (str and int) cannot be sorted
        raise TypeError(f"y mixes label types ({sorted({type(v).__name__ for v in y})}); "
                        "use one type for every label") from None
    if classes.size < 2:
        raise ValueError(f"y has only one class ({classes.tolist()[0]!r}); a classifier needs "
                         "at least 2")
    if model == "logistic" and classes.size != 2:
        raise ValueError(f"logistic needs exactly 2 classes; y has {classes.size} "
                         f"({classes[:10].tolist()}): use model=softmax or model=ovr")
    return codes.astype(np.float64).reshape(-1, 1), classes
