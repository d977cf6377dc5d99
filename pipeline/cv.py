"""Cross-validated choice of lambda: the path on every fold, scores per lambda, the 1-SE rule.

One lambda grid (from the full data's lam_max, as glmnet does) serves every fold, so the folds'
scores line up lambda by lambda. Folds are stratified for classifiers and seeded; each fold's
path is deterministic, so the result is the same for any ``n_jobs``. ``lam_min`` has the best
mean score; ``lam_1se`` is the largest lambda whose mean is within one standard error of it
(glmnet's rule: the simplest model the data cannot tell from the best). The refit on all the
data runs the path down to the chosen lambda, warm-started, to the same tol as ``fit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import gram_path
from .api import decision_function, predict, predict_proba
from .paths import (
    PathResult,
    check_path_options,
    data_objective,
    gram_based,
    lambda_grid,
    lambda_max,
    path,
    run_path,
)
from .solvers import FitResult
from .validation import check_targets, check_X
from .weights import row_weights

# name -> (what it needs from a fit, higher is better)
SCORINGS = {"deviance": ("loss", False), "mse": ("decision", False), "r2": ("decision", True),
            "accuracy": ("labels", True), "roc_auc": ("proba", True), "log_loss": ("proba", False)}
CLASSIFIERS = ("logistic", "softmax", "ovr", "multilabel")


@dataclass
class CVResult:
    """Scores per lambda over the folds, the chosen lambda and the refit on all the data."""

    lams: np.ndarray       # (n_lams,) largest first
    scores: np.ndarray     # (folds, n_lams) validation score of each fold's path
    mean: np.ndarray       # (n_lams,)
    se: np.ndarray         # (n_lams,) standard error of the mean over folds
    lam_min: float
    lam_1se: float
    lam: float             # the chosen one (select)
    select: str
    scoring: str
    greater_is_better: bool
    folds: list[np.ndarray]  # validation row indices of each fold
    fit: FitResult         # the refit on all the data at ``lam``
    path: PathResult       # the full data's path down to ``lam``


def _folds(model: str, y, n: int, folds: int, seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if not isinstance(folds, int | np.integer) or isinstance(folds, bool) or not 2 <= folds <= n:
        raise ValueError(f"folds={folds!r} must be an integer from 2 to n_samples={n}")
    if model in ("logistic", "softmax", "ovr"):
        labels = np.asarray(y).ravel()
        smallest = int(np.unique(labels, return_counts=True)[1].min())
        if smallest < folds:
            raise ValueError(f"folds={folds} is more than the {smallest} rows of the rarest "
                             "class: stratified folds need a row of every class in each fold; "
                             "use fewer folds")
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return [val for _, val in splitter.split(np.zeros(n), labels)]
    splitter_ = KFold(folds, shuffle=True, random_state=seed)
    return [val for _, val in splitter_.split(np.zeros(n))]


def _score(name: str, fit: FitResult, X, y, T: np.ndarray, s: np.ndarray | None = None) -> float:
    """The validation score of ``fit`` on (X, y); weighted by ``s`` (n,) when given."""
    from sklearn import metrics

    if name == "deviance":
        objective = data_objective(fit.model, X, T, 0 if fit.classes is None else
                                   len(fit.classes), s)
        G, gb = np.empty_like(fit.W), np.empty_like(fit.b)
        return objective.loss_grad(fit.W, fit.b, G, gb)
    if name in ("mse", "r2"):
        Z = decision_function(fit, X)
        truth = np.asarray(y, dtype=np.float64).reshape(Z.shape)
        return float(metrics.mean_squared_error(truth, Z, sample_weight=s) if name == "mse"
                     else metrics.r2_score(truth, Z, sample_weight=s))
    if name == "accuracy":
        return float(metrics.accuracy_score(np.asarray(y), predict(fit, X), sample_weight=s))
    P = predict_proba(fit, X)
    if fit.model == "multilabel":  # log_loss is refused for it up front
        return float(metrics.roc_auc_score(np.asarray(y), P, sample_weight=s))
    assert fit.classes is not None
    if name == "log_loss":
        return float(metrics.log_loss(np.asarray(y), P, labels=fit.classes, sample_weight=s))
    if fit.model == "logistic":
        return float(metrics.roc_auc_score(np.asarray(y) == fit.classes[1], P[:, 1],
                                           sample_weight=s))
    return float(metrics.roc_auc_score(np.asarray(y), P, multi_class="ovr", labels=fit.classes,
                                       sample_weight=s))


def _check_scoring(scoring: str | None, model: str) -> str:
    name = "deviance" if scoring is None else scoring
    if name not in SCORINGS:
        raise ValueError(f"scoring={scoring!r} is not one of: {', '.join(SCORINGS)}")
    if model == "linear" and name in ("accuracy", "roc_auc", "log_loss"):
        raise ValueError(f"scoring={name!r} needs a classifier; for model='linear' use "
                         "deviance, mse or r2")
    if model == "multilabel" and name == "log_loss":
        raise ValueError("scoring='log_loss' is not defined for multilabel targets; use "
                         "deviance (the summed binary cross-entropies), accuracy or roc_auc")
    if model != "linear" and name in ("mse", "r2"):
        raise ValueError(f"scoring={name!r} is for model='linear'; for classifiers use "
                         "deviance, accuracy, roc_auc or log_loss")
    return name


def _fold_scores(X, y, T, s: np.ndarray | None, val: np.ndarray, lams: np.ndarray,
                 scoring: str, kwargs) -> np.ndarray:
    train = np.setdiff1d(np.arange(X.shape[0]), val)
    P = path(X[train], y[train], lams=lams, sample_weight=None if s is None else s[train],
             **kwargs)
    sv = None if s is None else s[val]
    return np.array([_score(scoring, P.at(lam), X[val], y[val], T[val], sv) for lam in P.lams])


def cv(X, y, *, model: str, reg: str, folds: int = 5, scoring: str | None = None,
       select: str = "min", n_lams: int = 100, lam_min_ratio: float | None = None, lams=None,
       l1_ratio: float | None = None, seed: int = 0, n_jobs: int = 1, sample_weight=None,
       class_weight=None, **path_options) -> CVResult:
    """Choose lambda by ``folds``-fold cross-validation of the path, and refit at it.

    Parameters
    ----------
    X, y, model, reg, n_lams, lam_min_ratio, lams, l1_ratio : as for :func:`path`.
    folds : number of folds (stratified for logistic, softmax and ovr; seeded by ``seed``).
    scoring : deviance (the data loss, default), mse, r2 (linear); accuracy, roc_auc,
        log_loss (classifiers).
    select : "min" (best mean score) or "1se" (largest lambda within one standard error).
    n_jobs : folds run in this many processes (the result does not depend on it).
    sample_weight, class_weight : as for :func:`fit`. The rows' weights are resolved once on
        all the data ("balanced" from every row, as scikit-learn's ``LogisticRegressionCV``);
        each fold fits and scores its rows with their weights.
    path_options : solver, tol, max_iter, dtype, screening and the solver's options.
    """
    scoring_ = _check_scoring(scoring, model)
    if select not in ("min", "1se"):
        raise ValueError(f"select={select!r} must be 'min' or '1se'")
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs!r} must be an integer >= 1")
    Xc = check_X(X, path_options.get("dtype", "float64"), accept_sparse=True)
    yc = np.asarray(y)
    n = Xc.shape[0]
    T, classes = check_targets(model, yc, n)
    s = row_weights(model, sample_weight, class_weight, T, classes)
    val_rows = _folds(model, yc, n, folds, seed)
    if reg == "none":
        raise ValueError("reg='none' has no lambda to choose: use pipeline.fit, or reg=l1, l2 "
                         "or elasticnet")
    ratio = 0.5 if l1_ratio is None else l1_ratio
    if gram_based(model, reg, path_options.get("solver", "auto"), Xc):
        return _gram_cv(Xc, yc, T, s, val_rows, model, reg, l1_ratio, scoring_, select,
                        n_lams, lam_min_ratio, lams, seed, path_options)
    full = data_objective(model, Xc, T, 0 if classes is None else len(classes), s)
    # One grid for every fold: the full data's (glmnet), so the folds' scores line up.
    lam_max = lambda_max(full, reg, ratio)[0] if lams is None else 0.0
    lams_ = lambda_grid(lams, lam_max, n_lams, lam_min_ratio, n, Xc.shape[1])
    kwargs = dict(model=model, reg=reg, l1_ratio=l1_ratio, seed=seed, **path_options)
    if n_jobs == 1:
        parts = [_fold_scores(Xc, yc, T, s, v, lams_, scoring_, kwargs) for v in val_rows]
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs, backend="loky")(
            delayed(_fold_scores)(Xc, yc, T, s, v, lams_, scoring_, kwargs) for v in val_rows)
    scores = np.vstack(parts)
    return _choose(scores, lams_, scoring_, select, val_rows, Xc, yc, kwargs, s)


def _gram_cv(X, y, T, s, val_rows, model, reg, l1_ratio, scoring, select, n_lams,
             lam_min_ratio, lams, seed, path_options) -> CVResult:
    """``cv`` of a linear model on the folds' sums (``pipeline.gram_path``): one pass over X
    for every fold's sums, then every path point, KKT check and validation score from them.
    The folds run one after the other (each costs (k+1)^2 work per point, less than a
    process's start), so ``n_jobs`` changes nothing."""
    opts = dict(path_options)
    solver, tol = opts.pop("solver", "auto"), opts.pop("tol", 1e-7)
    max_iter, screening = opts.pop("max_iter", 1000), opts.pop("screening", True)
    dtype = opts.pop("dtype", "float64")
    ratio, tol, max_iter, seed, checked = check_path_options(
        model, reg, solver, l1_ratio, tol, max_iter, seed, opts)
    train, val, full = gram_path.fold_objectives(X, T, s, val_rows)
    lam_max, b0 = lambda_max(full, reg, ratio)
    lams_ = lambda_grid(lams, lam_max if lams is None else 0.0, n_lams, lam_min_ratio,
                        X.shape[0], X.shape[1])
    scores = np.empty((len(val_rows), len(lams_)))
    for f, (tr, va) in enumerate(zip(train, val, strict=True)):
        P = run_path(tr, reg, ratio, lams_, lam_max, lambda_max(tr, reg, ratio)[1], solver,
                     checked, tol, max_iter, seed, screening, None, dtype)
        scores[f] = [va.scores(P.W[i], P.b[i])[scoring] for i in range(len(lams_))]

    def refit(lams_head):
        return run_path(full, reg, ratio, lams_head, lam_max, b0, solver, checked, tol,
                        max_iter, seed, screening, None, dtype)

    return _choose(scores, lams_, scoring, select, val_rows, refit=refit)


def _choose(scores, lams, scoring, select, val_rows, X=None, y=None, kwargs=None, s=None,
            refit=None) -> CVResult:
    greater = SCORINGS[scoring][1]
    mean = scores.mean(axis=0)
    se = scores.std(axis=0, ddof=1) / np.sqrt(scores.shape[0])
    signed = mean if greater else -mean
    best = int(np.argmax(signed))  # the first (largest) lambda among ties
    within = np.flatnonzero(signed >= signed[best] - se[best])
    one_se = int(within.min())  # lams run from largest to smallest
    chosen = best if select == "min" else one_se
    refit = (refit(lams[:chosen + 1]) if refit is not None else
             path(X, y, lams=lams[:chosen + 1], sample_weight=s, **kwargs))
    return CVResult(lams=lams, scores=scores, mean=mean, se=se, lam_min=float(lams[best]),
                    lam_1se=float(lams[one_se]), lam=float(lams[chosen]), select=select,
                    scoring=scoring, greater_is_better=greater, folds=val_rows,
                    fit=refit.at(lams[chosen]), path=refit)
