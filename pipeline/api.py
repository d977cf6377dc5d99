"""The Python API: ``fit``, ``predict``, ``predict_proba`` over plain arrays, no Hydra needed."""

from __future__ import annotations

import contextlib

import numpy as np

import kernels
from kernels.gram import blas_single_thread

from .chunked import ChunkedSource
from .objectives import ArrayObjective, Objective, encode_targets
from .penalties import Penalty
from .solvers import (
    SOLVERS,
    Callback,
    FitResult,
    Problem,
    check_compatibility,
    check_solver_options,
    choose_auto,
    options_for,
)
from .streamed import source_decision, streamed_problem
from .validation import (
    check_hyperparameters,
    check_targets,
    check_X,
    is_sparse,
    warn_ineffective,
)
from .weights import row_weights


def fit(X, y, *, model: str, reg: str = "none", lam: float = 0.0, l1_ratio: float | None = None,
        solver: str = "auto", tol: float = 1e-7, max_iter: int = 1000, seed: int = 0,
        dtype: str = "float64", backend: str = "cpu", backend_options: dict | None = None,
        callback: Callback | None = None, sample_weight=None, class_weight=None,
        _source_weights: bool = False, **solver_options) -> FitResult:
    """Minimise F = L + R (``shared/spec/objectives.md``) for one of the lecture's models.

    Parameters
    ----------
    X : array (n_samples, n_features), or a :class:`pipeline.chunked.ChunkedSource` (a
        ``.npy`` file, ``.npy`` shards, Parquet, zarr: ``pipeline.chunked.open_source``) with
        ``y=None``: the targets come from the source and X is streamed from disk chunk by
        chunk, never loaded whole (``pipeline.streamed``). Every solver but ``sgd`` runs on a
        source (on ``backend="cpu"``); the separability LP that runs before an unpenalised
        classifier on an array is skipped (the solvers' own separability checks still stop
        the fit with a ``SeparableDataWarning``).
    y : targets: reals (n,) or (n, m) for ``linear``; two labels for ``logistic``; any labels
        for ``softmax`` / ``ovr``; an (n, m) 0/1 matrix for ``multilabel``.
    model : linear, logistic, softmax, ovr, multilabel.
    reg, lam, l1_ratio : the penalty R = lam / k * (...), bias unpenalised. ``l1_ratio``
        (default 0.5) is the L1 share of ``elasticnet``; given with another ``reg`` it warns.
    solver : gd, agd, sgd, lbfgs, split_lbfgs, newton, prox_newton, cd, closed_form or auto
        (``pipeline.solvers.SOLVERS`` says what each supports and takes).
    tol : stop when the max-norm of the (proximal) gradient falls below it.
    max_iter : iterations (epochs for sgd, sweeps for cd).
    seed : seeds every random choice (sgd shuffles, Hessian and Lipschitz samples).
    dtype : float64 or float32 storage of X (W, b and all sums stay float64).
    backend : cpu (numba), cuda (numba CUDA; X copied to the GPU once, needs the cuda extra)
        or dask (chunks resident on the workers of a Dask cluster, ``pipeline.dask_backend``).
    backend_options : for ``backend="dask"`` only: ``address`` (an existing scheduler; default
        a LocalCluster on 127.0.0.1 started and closed by this call), ``n_workers``,
        ``threads_per_worker``, ``chunk_rows``, ``timeout``, ``scratch_dir`` (see
        ``pipeline.dask_backend.DaskOptions``). X is written once to ``scratch_dir`` as a
        ``.npy`` file the workers read their chunks from, never sent through the scheduler.
    callback : ``callback(step, F, L, W, b)`` after every step (progress bars, per-step
        metrics); W and b are the solver's current arrays: copy them to keep them.
    sample_weight : (n,) non-negative row weights: the data loss becomes the weighted mean
        ``sum_l s_l loss_l / sum_l s_l`` (a weight of 0 leaves the row out; integer weights
        equal repeated rows). The kernels weigh the rows in their single pass over X.
    class_weight : logistic, softmax and ovr: ``"balanced"`` (class c weighs S / (m S_c), i.e.
        n / (m n_c) without sample weights, as scikit-learn) or a mapping label -> weight
        (missing classes weigh 1); multiplies each row's weight by its class's.
    _source_weights : private: lets the weights above apply to a chunked source on cpu
        (``pipeline.streamed_fit.fit_source``, the app's streamed runs).
    solver_options : the solver's own options (e.g. ``batch_size``, ``lr`` for sgd). An option
        the solver does not define raises ``TypeError`` listing those it does; under
        ``solver="auto"`` an option the chosen solver does not use warns and is ignored.

    Returns
    -------
    FitResult with W (k, m), b (m,), F, L, R, passes, time, convergence and history.

    Raises
    ------
    TypeError, ValueError
        Before any work, for an unknown option, a value of the wrong type or out of range,
        a combination no solver supports, or data that cannot fit the model.
    """
    check_compatibility(model, reg, solver, backend)
    lam, l1_ratio_, tol, max_iter, seed = check_hyperparameters(
        lam, 0.5 if l1_ratio is None else l1_ratio, tol, max_iter, seed)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback={callback!r} must be callable as callback(step, F, L, W, b)")
    checked = check_solver_options(solver, solver_options)
    dask_options = _backend_options(backend, backend_options)
    warn_ineffective(reg, lam, l1_ratio is not None)
    weighted = sample_weight is not None or class_weight is not None
    source = isinstance(X, ChunkedSource)  # weighted: the app's streamed runs only (for now)
    if weighted and (backend == "cuda" or (source and (backend != "cpu" or not _source_weights))):
        where = "a chunked source" if source else "backend='cuda'"
        raise ValueError(f"sample_weight / class_weight are not supported on {where} yet: "
                         "fit in-memory arrays on backend 'cpu' or 'dask'")
    if source and backend == "dask":  # each worker reads its chunks
        from .dask_backend import source_objective

        with source_objective(X, y, model, solver, dask_options, dtype) as (on_dask, classes):
            result = _solve(on_dask, None, None, 0, reg, lam, l1_ratio_, solver, tol,
                            max_iter, seed, backend, callback, checked)
        result.classes, result.dtype = classes, dtype
        result.backend_facts = on_dask.backend_facts
        return result
    if source:  # streamed from disk chunk by chunk (pipeline.streamed)
        streamed, classes = streamed_problem(X, y, model, solver, dtype, backend,
                                             sample_weight, class_weight)
        result = _solve(streamed, None, None, 0, reg, lam, l1_ratio_, solver, tol, max_iter,
                        seed, backend, callback, checked)
        result.classes, result.dtype = classes, dtype
        return result
    if is_sparse(X) and backend != "cpu":
        raise ValueError(f"a scipy.sparse X runs on backend='cpu' only; got backend={backend!r}")
    X = check_X(X, dtype, accept_sparse=True)  # sparse: CSR (CSC, COO converted once)
    T, classes = check_targets(model, y, X.shape[0])
    s = row_weights(model, sample_weight, class_weight, T, classes)
    n_classes = 0 if classes is None else len(classes)
    with contextlib.ExitStack() as stack:
        objective: Objective
        if is_sparse(X):
            from .objectives_sparse import SparseObjective

            objective = SparseObjective(model, X, T, n_classes, sample_weight=s)
        elif backend == "cuda":
            from .objectives_cuda import CudaObjective

            objective = CudaObjective(model, X, T, n_classes)
        elif backend == "dask":
            from .dask_backend import array_objective

            objective = stack.enter_context(
                array_objective(model, X, T, n_classes, dask_options, dtype, sample_weight=s))
        else:
            objective = ArrayObjective(model, X, T, n_classes, sample_weight=s)
        result = _solve(objective, X, T, n_classes, reg, lam, l1_ratio_, solver, tol,
                        max_iter, seed, backend, callback, checked, s)
    result.classes = classes
    result.dtype = dtype
    if backend == "dask":
        result.backend_facts = objective.backend_facts  # type: ignore[attr-defined]
    return result


def _backend_options(backend: str, given: dict | None):
    """The checked options of ``backend="dask"``; ``TypeError`` for options on another
    backend (it has none)."""
    if backend == "dask":
        from .dask_backend import check_options

        return check_options(given)
    if given:
        raise TypeError(f"backend_options={given!r} are for backend='dask' only; "
                        f"backend={backend!r} takes none")
    return None


def _solve(objective: Objective, X, T, n_classes: int, reg: str, lam: float, l1_ratio: float,
           solver: str, tol: float, max_iter: int, seed: int, backend: str,
           callback: Callback | None, checked: dict,
           sample_weight: np.ndarray | None = None) -> FitResult:
    """The chosen solver on ``objective`` + the penalty (the separability LP on the driver's
    X and encoded targets first, when the optimum may not exist; rows of weight 0 are not
    part of the loss and are left out of it)."""
    model = objective.model
    penalty = Penalty(reg, lam, l1_ratio, objective.n_features)
    sparse = is_sparse(X)
    chosen = (choose_auto(model, reg, objective.n_samples, objective.n_features, backend,
                          sparse=sparse)
              if solver == "auto" else solver)
    options = options_for(chosen, checked, solver)
    problem = Problem(objective, penalty, tol, max_iter, callback, seed=seed)
    if problem.can_diverge and X is not None:  # the LP needs X in memory (not for a source)
        from .separability import separating_point  # scipy's LP: imported only when needed

        if sample_weight is not None and not sample_weight.all():
            X, T = X[sample_weight > 0], T[sample_weight > 0]

        # a sparse X only for an LP small enough to be built at all (its rows are dense)
        small = X.shape[0] * (X.shape[1] + 1) <= 500_000
        separator = None if sparse and not small else separating_point(
            model, X.toarray() if sparse else X, encode_targets(model, T, n_classes),
            objective.n_outputs)
        if separator is not None:
            return problem.stop_separable(chosen, *separator)
    W, b = objective.zeros()
    # overflow: a NonFiniteError says it. BLAS on one thread: the solvers' own dense algebra
    # is (k+1)-sized, where a BLAS thread pool only adds hand-offs (a linear L1 path on 2 cores
    # under load ran 5x slower with it); the passes over X are numba's, on every core.
    with np.errstate(over="ignore", invalid="ignore"), blas_single_thread():
        return SOLVERS[chosen].fn(problem, W, b, **options)


def _point(result, lam: float | None) -> FitResult:
    """A FitResult as given, or the point of a ``PathResult`` at ``lam``."""
    if hasattr(result, "lams"):  # a PathResult (imported lazily: paths imports this module)
        if lam is None:
            raise TypeError("a PathResult predicts at one of its lambdas: pass lam=... (one of "
                            "PathResult.lams)")
        return result.at(lam)
    if lam is not None:
        raise TypeError("lam= is for a PathResult; a FitResult has one lambda already")
    return result


def decision_function(result: FitResult, X, *, lam: float | None = None) -> np.ndarray:
    """Logits ``X W + b`` (n, m) (of a path's point at ``lam`` for a PathResult)."""
    result = _point(result, lam)
    if isinstance(X, ChunkedSource):  # chunk by chunk: holds the (n, m) logits, not X
        return source_decision(X, result.W, result.b, result.dtype)
    X = check_X(X, result.dtype, accept_sparse=True)
    if X.shape[1] != result.W.shape[0]:
        raise ValueError(f"X has {X.shape[1]} features but the model was fit on "
                         f"{result.W.shape[0]}")
    if is_sparse(X):
        from kernels.sparse import decision_function as sparse_decision

        return sparse_decision((X.data, X.indices, X.indptr), result.W, result.b, X.shape[1])
    return kernels.decision_function(X, result.W, result.b)


def predict_proba(result: FitResult, X, *, lam: float | None = None) -> np.ndarray:
    """Class probabilities: logistic (n, 2); softmax and ovr (n, m); multilabel (n, m)."""
    from scipy.special import expit, softmax  # lazy: keeps `import pipeline` light

    result = _point(result, lam)
    Z = decision_function(result, X)
    if result.model == "logistic":
        p = expit(Z[:, 0])
        return np.column_stack([1.0 - p, p])
    if result.model == "softmax":
        return softmax(Z, axis=1)
    if result.model == "ovr":
        P = expit(Z)
        return P / P.sum(axis=1, keepdims=True)
    if result.model == "multilabel":
        return expit(Z)
    raise ValueError("predict_proba needs a classifier; model=linear predicts values")


def predict(result: FitResult, X, *, lam: float | None = None) -> np.ndarray:
    """Values (linear), labels (logistic, softmax, ovr) or a 0/1 matrix (multilabel); for a
    ``PathResult`` those of its point at ``lam``."""
    result = _point(result, lam)
    Z = decision_function(result, X)
    if result.model == "linear":
        return Z[:, 0] if Z.shape[1] == 1 else Z
    if result.model == "multilabel":
        return (Z > 0).astype(np.int64)
    assert result.classes is not None
    idx = (Z[:, 0] > 0).astype(np.intp) if result.model == "logistic" else Z.argmax(axis=1)
    return result.classes[idx]
