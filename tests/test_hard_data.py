"""``solver="auto"`` reaches the optimum, and knows it, on data nobody prepared for it.

Two kinds of data, every model x reg, default ``tol`` and ``max_iter``:

- ``unscaled``: feature columns with scales from 1e-3 to 1e4 and means up to 1e3;
- ``correlated``: pairs of columns with correlation 0.999.

The reference is independent of the project's kernels and solvers: scipy's L-BFGS-B on the
split problem over the NumPy objective of tests/naive.py, but in centred coordinates with the
weights scaled to equal curvature (an exact change of variables; on the raw unscaled columns the
plain reference of tests/references.py stops 1e-2 to 1e0 above the optimum). Linear models are
checked against scikit-learn too.
"""

import warnings
from functools import cache

import numpy as np
import pytest
from scipy.optimize import minimize

import pipeline
from pipeline.solvers._problem import ConvergenceWarning
from tests import naive
from tests import references as ref

MODELS = ("linear", "logistic", "softmax", "ovr", "multilabel")
REGS = ("none", "l1", "l2", "elasticnet")
LAM = {"unscaled": 0.05, "correlated": 0.01}
N, K, M = 300, 8, 3
CURVATURE = {"linear": 2.0, "logistic": 0.25, "softmax": 0.5, "ovr": 0.25, "multilabel": 0.25}


@cache
def hard_data(kind, model, seed=0, n=N):
    """(X, y): a linear signal in standardised columns Z, shown through X (noisy labels)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, K))
    if kind == "correlated":
        for j in range(0, K - 1, 2):
            Z[:, j + 1] = 0.999 * Z[:, j] + np.sqrt(1 - 0.999**2) * Z[:, j + 1]
        X = Z.copy()
    else:
        X = Z * np.logspace(-3, 4, K) + np.where(np.arange(K) % 2 == 0, 1e3, -30.0)
    logits = 0.7 * Z @ rng.standard_normal((K, M))
    if model == "linear":
        return X, logits[:, 0] + 0.5 * rng.standard_normal(n)
    if model == "logistic":
        return X, (rng.random(n) < 1 / (1 + np.exp(-logits[:, 0]))).astype(int)
    if model in ("softmax", "ovr"):
        return X, (logits + rng.gumbel(size=(n, M))).argmax(axis=1)
    return X, (rng.random((n, M)) < 1 / (1 + np.exp(-logits))).astype(int)


def naive_targets(model, y):
    if model == "softmax":
        return y.astype(int)
    if model == "ovr":
        return np.eye(int(y.max()) + 1)[y]
    return y.reshape(len(y), -1).astype(float)


@cache
def reference(kind, model, reg):
    """(F*, W*, b*) of ``hard_data(kind, model)`` (see ``scaled_reference``)."""
    X, y = hard_data(kind, model)
    return scaled_reference(X, naive_targets(model, y), model, reg,
                            0.0 if reg == "none" else LAM[kind])


def _loss_grad(kind, X, Y, W, b, rows):
    """tests/naive.py's loss and gradient with one exp per entry and no one-hot matrix (2x
    faster on 2.5e5 rows, where a reference takes a hundred evaluations); ``scaled_reference``
    checks it against naive.loss_grad at the optimum it finds. ``rows``: ``arange(n)``."""
    n = X.shape[0]
    Z = X @ W + b
    if kind == "softmax":
        top = Z.max(axis=1, keepdims=True)
        E = np.exp(Z - top)
        S = E.sum(axis=1, keepdims=True)
        loss = (np.sum(top[:, 0] + np.log(S[:, 0])) - np.sum(Z[rows, Y])) / n
        D = E / S
        D[rows, Y] -= 1.0
    elif kind in ("logistic", "multilabel"):
        E = np.exp(-np.abs(Z))
        loss = np.sum(np.maximum(Z, 0.0) + np.log1p(E) - Y * Z) / n
        D = np.where(Z >= 0, 1.0, E) / (1.0 + E) - Y
    else:
        return naive.loss_grad(kind, X, Y, W, b)
    return loss, X.T @ D / n, D.sum(axis=0) / n


def scaled_reference(X, Y, model, reg, lam):
    """(F*, W*, b*) by L-BFGS-B on the split problem in centred, curvature-scaled coordinates.

    ``W = V / s``, ``b = c - mu^T W`` with ``s_j = sqrt(var_j + 2 a2 / curvature)``: the
    penalty becomes ``a1 |V_j| / s_j + a2 V_j^2 / s_j^2``, the problem well conditioned.
    """
    K = X.shape[1]
    kind_ = "multilabel" if model == "ovr" else model
    m = Y.shape[1] if Y.ndim == 2 else int(Y.max()) + 1
    a1, a2 = ref._coefs(reg, lam, 0.5, K)
    mu = X.mean(axis=0)
    s = np.sqrt(X.var(axis=0) + 2 * a2 / CURVATURE[model])
    Xs = (X - mu) / s
    w1, w2 = (a1 / s)[:, None], (a2 / s**2)[:, None]
    km = K * m
    rows = np.arange(X.shape[0])

    def fun(x):
        U, V, c = x[:km].reshape(K, m), x[km:2 * km].reshape(K, m), x[2 * km:]
        loss, G, gb = _loss_grad(kind_, Xs, Y, U - V, c, rows)
        GW = G + 2 * w2 * (U - V)
        f = loss + np.sum(w1 * (U + V)) + np.sum(w2 * (U - V) ** 2)
        return f, np.concatenate([(GW + w1).ravel(), (w1 - GW).ravel(), gb])

    x = np.zeros(2 * km + m)
    for _ in range(3):  # restarts polish past L-BFGS-B's own stopping rules
        res = minimize(fun, x, jac=True, method="L-BFGS-B",
                       bounds=[(0, None)] * (2 * km) + [(None, None)] * m,
                       options={"maxiter": 100_000, "maxfun": 200_000, "ftol": 1e-17,
                                "gtol": 1e-12, "maxcor": 30})
        x = res.x
    Vx, c = (x[:km] - x[km:2 * km]).reshape(K, m), x[2 * km:]
    fast, slow = _loss_grad(kind_, Xs, Y, Vx, c, rows), naive.loss_grad(kind_, Xs, Y, Vx, c)
    assert abs(fast[0] - slow[0]) <= 1e-12 * abs(slow[0])
    for got, want in zip(fast[1:], slow[1:], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13)
    W = (x[:km] - x[km:2 * km]).reshape(K, m) / s[:, None]
    b = x[2 * km:] - mu @ W
    return naive.objective(kind_, reg, lam, 0.5, X, Y, W, b), W, b


CASES = [pytest.param(kind, model, reg, id=f"{kind}-{model}-{reg}")
         for kind in ("unscaled", "correlated") for model in MODELS for reg in REGS]


@pytest.mark.parametrize("kind,model,reg", CASES)
def test_auto_reaches_the_optimum_and_says_so(kind, model, reg):
    X, y = hard_data(kind, model)
    lam = 0.0 if reg == "none" else LAM[kind]
    F_star, _, _ = reference(kind, model, reg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = pipeline.fit(X, y, model=model, reg=reg, lam=lam)
    assert res.converged, (res.solver, res.criterion, res.residual)
    assert res.residual <= 100 * 1e-7
    # F recomputed by the naive objective: the kernel's value is not taken on trust
    F = naive.objective("multilabel" if model == "ovr" else model, reg, lam, 0.5, X,
                        naive_targets(model, y), res.W, res.b)
    assert abs(F - res.objective) <= 1e-10 * abs(F)
    assert (F - F_star) / abs(F_star) <= 1e-6, (res.solver, F, F_star)


@pytest.mark.parametrize("kind", ["unscaled", "correlated"])
@pytest.mark.parametrize("reg", ["l1", "l2", "elasticnet"])
def test_reference_agrees_with_scikit_learn(kind, reg):
    """The reference itself is right: scikit-learn's linear models (they centre X) agree."""
    from sklearn.linear_model import ElasticNet, Lasso, Ridge

    X, y = hard_data(kind, "linear")
    lam = LAM[kind]
    est = {"l2": Ridge(alpha=N * lam / K, solver="cholesky"),
           "l1": Lasso(alpha=lam / (2 * K), tol=1e-14, max_iter=1_000_000),
           # ours: |r|^2/n + lam/k (|w|_1 + |w|^2) / 2; sklearn's, times 2, with l1_ratio 1/3
           "elasticnet": ElasticNet(alpha=3 * lam / (4 * K), l1_ratio=1 / 3, tol=1e-14,
                                    max_iter=1_000_000)}[reg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own convergence chatter
        est.fit(X, y)
    F_sk = naive.objective("linear", reg, lam, 0.5, X, y[:, None], est.coef_[:, None],
                           np.atleast_1d(est.intercept_))
    F_ref, _, _ = reference(kind, "linear", reg)
    assert abs(F_sk - F_ref) <= 1e-8 * F_ref


def test_plain_reference_is_not_enough_on_unscaled_data():
    """Why the reference above centres and scales: the plain one stops far off here."""
    X, y = hard_data("unscaled", "logistic")
    F_plain, _, _ = ref.split_optimum_arrays(X, naive_targets("logistic", y), "logistic", "l2",
                                             LAM["unscaled"])
    F_star, _, _ = reference("unscaled", "logistic", "l2")
    assert F_plain > F_star * (1 + 1e-6)


LARGE_N_CASES = ([pytest.param(m, r, "newton", id=f"{m}-{r}-newton")
                  for m in ("softmax", "ovr", "multilabel") for r in ("none", "l2")]
                 + [pytest.param(m, r, "prox_newton", id=f"{m}-{r}-prox_newton")
                    for m in ("softmax", "ovr", "multilabel") for r in ("l1", "elasticnet")])


@pytest.mark.parametrize("model,reg,solver", LARGE_N_CASES)
def test_the_choices_of_auto_at_many_rows_work_on_unscaled_data(model, reg, solver):
    """From 2e5 rows auto picks newton (smooth) or prox_newton (l1) for several outputs; on
    few rows they run with the full Hessian, the same coordinates and the same verdict."""
    X, y = hard_data("unscaled", model)
    lam = 0.0 if reg == "none" else LAM["unscaled"]
    F_star, _, _ = reference("unscaled", model, reg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = pipeline.fit(X, y, model=model, reg=reg, lam=lam, solver=solver)
    assert res.converged and res.solver == solver, (res.criterion, res.residual)
    assert (res.objective - F_star) / abs(F_star) <= 1e-6


@pytest.mark.parametrize("reg", ["l1", "elasticnet"])
def test_lasso_on_five_pairs_with_correlation_0999(reg):
    """Where coordinate descent crawled to its sweep cap (2.9e-4 above the optimum): small
    lam, ten columns in five pairs; scikit-learn's coordinate descent, run to 1e-14, is the
    reference here."""
    from sklearn.linear_model import ElasticNet, Lasso

    rng = np.random.default_rng(101)
    n, k, lam = 500, 10, 1e-3
    Z = rng.standard_normal((n, k))
    for j in range(0, k - 1, 2):
        Z[:, j + 1] = 0.999 * Z[:, j] + np.sqrt(1 - 0.999**2) * Z[:, j + 1]
    y = 0.7 * (Z @ rng.standard_normal((k, 3)))[:, 0] + 0.5 * rng.standard_normal(n)
    est = (Lasso(alpha=lam / (2 * k), tol=1e-14, max_iter=10_000_000) if reg == "l1" else
           ElasticNet(alpha=3 * lam / (4 * k), l1_ratio=1 / 3, tol=1e-14, max_iter=10_000_000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(Z, y)
    F_sk = naive.objective("linear", reg, lam, 0.5, Z, y[:, None], est.coef_[:, None],
                           np.atleast_1d(est.intercept_))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = pipeline.fit(Z, y, model="linear", reg=reg, lam=lam)
    assert res.solver == "cd" and res.converged and res.residual <= 1e-7
    assert (res.objective - F_sk) / F_sk <= 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("model,reg", [("logistic", "none"), ("softmax", "l2"),
                                       ("multilabel", "l1")])
def test_auto_on_many_unscaled_rows(model, reg):
    """From 2e5 rows the Hessians are taken on samples of rows; unscaled columns still reach
    the optimum (a sample alone once stalled logistic regression at a residual of 3e-4)."""
    X, y = hard_data("unscaled", model, seed=7, n=250_000)
    lam = 0.0 if reg == "none" else LAM["unscaled"]
    F_star, _, _ = scaled_reference(X, naive_targets(model, y), model, reg, lam)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = pipeline.fit(X, y, model=model, reg=reg, lam=lam)
    assert res.converged, (res.solver, res.criterion, res.residual)
    assert (res.objective - F_star) / abs(F_star) <= 1e-6
