"""Input checks that run before any work: clear messages naming the field and the fix."""

from __future__ import annotations

import numpy as np

MODELS = ("linear", "logistic", "softmax", "ovr", "multilabel")
REGS = ("none", "l1", "l2", "elasticnet")
SOLVERS = ("auto", "gd", "agd", "sgd", "lbfgs", "split_lbfgs", "newton", "prox_newton", "cd",
           "closed_form")
DTYPES = ("float64", "float32")
BACKENDS = ("cpu", "cuda")

# Which solvers can minimise which (model, reg): the one table every check reads.
_SMOOTH_ONLY = {"lbfgs", "newton", "closed_form"}
_LINEAR_ONLY = {"cd", "closed_form"}
_LOGISTIC_ONLY: set[str] = set()
# These read X through the CPU Gram kernel: no device twin (yet).
_CPU_ONLY = {"cd", "closed_form", "prox_newton"}


def allowed_solvers(model: str, reg: str, backend: str = "cpu") -> list[str]:
    """Solvers that can minimise ``model`` with ``reg`` on ``backend`` (``auto`` always can)."""
    out = []
    for s in SOLVERS:
        if s in _CPU_ONLY and backend != "cpu":
            continue
        if s in _SMOOTH_ONLY and reg not in ("none", "l2"):
            continue
        if s in _LINEAR_ONLY and model != "linear":
            continue
        if s in _LOGISTIC_ONLY and model != "logistic":
            continue
        out.append(s)
    return out


def _choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not known; choose one of {', '.join(allowed)}")


def check_compatibility(model: str, reg: str, solver: str, backend: str = "cpu") -> None:
    """Raise ``ValueError`` when ``solver`` cannot minimise ``model`` + ``reg`` on ``backend``."""
    _choice("model", model, MODELS)
    _choice("reg", reg, REGS)
    _choice("solver", solver, SOLVERS)
    _choice("backend", backend, BACKENDS)
    allowed = allowed_solvers(model, reg, backend)
    if solver not in allowed:
        why = ("needs a smooth objective (reg none or l2)" if solver in _SMOOTH_ONLY
               and reg not in ("none", "l2") else
               "is for model=logistic only" if solver in _LOGISTIC_ONLY and model != "logistic"
               else "is for model=linear only" if solver in _LINEAR_ONLY and model != "linear"
               else "runs on backend=cpu only")
        raise ValueError(f"solver={solver!r} {why}; for model={model!r} with reg={reg!r} "
                         f"on backend={backend!r} use one of: {', '.join(allowed)}")


def check_hyperparameters(lam: float, l1_ratio: float, tol: float, max_iter: int) -> None:
    """Range checks of the scalar settings."""
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam={lam} must be a finite number >= 0 (the lecture's lambda)")
    if not 0.0 <= l1_ratio <= 1.0:
        raise ValueError(f"l1_ratio={l1_ratio} must lie in [0, 1]")
    if not tol > 0:
        raise ValueError(f"tol={tol} must be > 0")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter={max_iter} must be >= 1")


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


def check_X(X, dtype: str = "float64") -> np.ndarray:
    """Return X as a C-contiguous 2-D float array of ``dtype`` (no copy when it already is)."""
    _choice("dtype", dtype, DTYPES)
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty (shape {X.shape}); need at least one row and one column")
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise ValueError(f"X must be real numbers; got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=dtype)
    from kernels import all_finite  # lazy: numba is not needed to validate a config

    if not all_finite(X):
        raise ValueError(_where_not_finite(X, "X"))
    return X


def check_targets(model: str, y, n_samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate ``y`` for ``model``; return float64 targets (n, m) and the class labels.

    linear: (n,) or (n, m) reals. logistic: two classes (0/1 or any two labels).
    softmax/ovr: at least two classes (any labels; encoded as 0..m-1).
    multilabel: (n, m) of 0/1.
    """
    _choice("model", model, MODELS)
    y = np.asarray(y)
    if y.shape[0] != n_samples:
        raise ValueError(f"y has {y.shape[0]} rows but X has {n_samples}; they must match")
    if y.size == 0:
        raise ValueError("y is empty")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ValueError(_where_not_finite(y.astype(float), "y"))
    if model == "linear":
        if y.ndim > 2 or not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"linear needs numeric y of shape (n,) or (n, m); got {y.shape}")
        return np.ascontiguousarray(y.reshape(n_samples, -1), dtype=np.float64), None
    if model == "multilabel":
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise ValueError("multilabel needs y of shape (n, m) with entries 0 or 1")
        return np.ascontiguousarray(y, dtype=np.float64), np.arange(y.shape[1])
    if y.ndim != 1:
        raise ValueError(f"{model} needs y of shape (n,) holding class labels; got {y.shape}")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise ValueError(f"{model} needs class labels, but y is continuous (e.g. {y[0]}); "
                         "use model=linear for regression")
    classes, codes = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"y has only one class ({classes[0]!r}); a classifier needs at least 2")
    if model == "logistic" and classes.size != 2:
        raise ValueError(f"logistic needs exactly 2 classes; y has {classes.size} "
                         f"({classes[:10].tolist()}): use model=softmax or model=ovr")
    return codes.astype(np.float64).reshape(-1, 1), classes
