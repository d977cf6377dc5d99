"""Reference optima F*, computed independently of the project's kernels and solvers.

``split_optimum`` minimises the NumPy objective of tests/naive.py with scipy's L-BFGS-B on the
split W = U - V (U, V >= 0), which makes every penalty smooth; ``sklearn_optimum`` uses
scikit-learn with the lambda mapping of objectives.md. Tests check the two agree.
"""

from functools import cache

import numpy as np
from scipy.optimize import minimize
from sklearn import datasets

from tests import naive

LOADERS = {"breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris,
           "wine": datasets.load_wine, "digits": datasets.load_digits,
           "diabetes": datasets.load_diabetes}


@cache
def dataset(name):
    """(X, y) preprocessed as reference-optima.md says."""
    X, y = LOADERS[name](return_X_y=True)
    X = naive.standardise(X)
    if name == "diabetes":
        y = (y - y.mean()) / y.std()
    return X, y


def targets(model, y, m):
    """Naive-reference targets: (n, m) floats, or class indices for softmax."""
    if model == "softmax":
        return y.astype(int)
    if model in ("ovr", "multilabel") and y.ndim == 1:
        return np.eye(m)[y.astype(int)]
    return y.reshape(len(y), -1).astype(float)


def _coefs(reg, lam, l1_ratio, k):
    a1 = {"none": 0, "l1": 1, "l2": 0, "elasticnet": l1_ratio}[reg] * lam / k
    a2 = {"none": 0, "l1": 0, "l2": 1, "elasticnet": 1 - l1_ratio}[reg] * lam / k
    return a1, a2


@cache
def split_optimum(name, model, reg, lam, l1_ratio=0.5):
    """(F*, W*, b*) on a shipped dataset (cached per test process)."""
    X, y = dataset(name)
    m = {"linear": 1, "logistic": 1}.get(model, int(y.max()) + 1)
    return split_optimum_arrays(X, targets(model, y, m), model, reg, lam, l1_ratio)


def split_optimum_arrays(X, Y, model, reg, lam, l1_ratio=0.5):
    """(F*, W*, b*) by L-BFGS-B on the split problem, in float64, to ~1e-12."""
    k = X.shape[1]
    m = Y.shape[1] if Y.ndim == 2 else int(Y.max()) + 1
    kind = "multilabel" if model == "ovr" else model
    a1, a2 = _coefs(reg, lam, l1_ratio, k)
    km = k * m

    def fun(x):
        U, V, b = x[:km].reshape(k, m), x[km:2 * km].reshape(k, m), x[2 * km:]
        W = U - V
        loss, G, gb = naive.loss_grad(kind, X, Y, W, b)
        f = loss + a1 * (U.sum() + V.sum()) + a2 * np.sum(W**2)
        GW = G + 2 * a2 * W
        return f, np.concatenate([(GW + a1).ravel(), (-GW + a1).ravel(), gb])

    bounds = [(0, None)] * (2 * km) + [(None, None)] * m
    x = np.zeros(2 * km + m)
    for _ in range(3):  # restarts polish the result past L-BFGS-B's own stopping rules
        res = minimize(fun, x, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 200000, "maxfun": 400000, "ftol": 1e-17,
                                "gtol": 1e-13, "maxcor": 30})
        x = res.x
    W = x[:km].reshape(k, m) - x[km:2 * km].reshape(k, m)
    return float(res.fun), W, x[2 * km:]


def sklearn_optimum(name, model, reg, lam):
    """F* from scikit-learn with the mapping of objectives.md (l1 and l2 only)."""
    from sklearn.linear_model import Lasso, LogisticRegression, Ridge

    X, y = dataset(name)
    n, k = X.shape
    if model == "linear":
        est = (Ridge(alpha=n * lam / k, tol=1e-12) if reg == "l2"
               else Lasso(alpha=lam / (2 * k), tol=1e-14, max_iter=1_000_000))
        est.fit(X, y)
        W, b = est.coef_.reshape(k, 1), np.atleast_1d(est.intercept_)
        Y = targets(model, y, 1)
    else:
        C = k / (2 * n * lam) if reg == "l2" else k / (n * lam)
        solver = "lbfgs" if reg == "l2" else "saga"
        est = LogisticRegression(C=C, l1_ratio=0.0 if reg == "l2" else 1.0, solver=solver,
                                 tol=1e-12, max_iter=1_000_000)
        est.fit(X, y)
        W, b = est.coef_.T, est.intercept_
        Y = targets(model, y, W.shape[1])
    return naive.objective(model, reg, lam, 0.5, X, Y, W, b), W, b
