"""Linear paths and CV on sufficient statistics (pipeline.gram_path) against data passes."""

import warnings

import numpy as np
import pytest

import pipeline
from pipeline import gram_path
from pipeline.cv import cv
from pipeline.paths import path


def _data(n=500, k=8, m=1, mean=0.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k)) * rng.uniform(0.5, 3.0, k) + mean * rng.uniform(-1, 1, k)
    W = np.zeros((k, m))
    W[:3] = rng.standard_normal((3, m))
    Y = X @ W + 0.5 * rng.standard_normal((n, m)) + 10.0 * mean
    return X, Y


def _reference(X, Y, s, W, b):
    """L and its gradient by a plain float64 pass over the rows (the spec's weighted mean)."""
    s = np.ones(X.shape[0]) if s is None else s
    R = X @ W + b - Y
    L = float((s[:, None] * R**2).sum() / s.sum())
    G = 2.0 * X.T @ (s[:, None] * R) / s.sum()
    return L, G, 2.0 * (s[:, None] * R).sum(0) / s.sum()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("mean", [0.0, 1e4])
def test_loss_and_gradient_from_the_sums_equal_a_data_pass(weighted, m, mean):
    X, Y = _data(m=m, mean=mean)
    s = np.random.default_rng(1).uniform(0, 2, X.shape[0]) if weighted else None
    obj = gram_path.objective(X, Y, s)
    rng = np.random.default_rng(2)
    for W, b in [(np.zeros((8, m)), Y.mean(0)),
                 (np.linalg.lstsq(np.c_[X, np.ones(len(X))], Y, rcond=None)[0][:8]
                  + 1e-3 * rng.standard_normal((8, m)), None)]:
        if b is None:  # near the optimum, where the loss is small against y's mean square
            b = np.linalg.lstsq(np.c_[X, np.ones(len(X))], Y, rcond=None)[0][8]
        G, gb = np.empty((8, m)), np.empty(m)
        L = obj.loss_grad(W, b, G, gb)
        L_ref, G_ref, gb_ref = _reference(X, Y, s, W, b)
        assert L == pytest.approx(L_ref, rel=1e-9)
        scale = np.abs(G_ref).max() + 1e-3  # gradients near 0 at the optimum: absolute
        np.testing.assert_allclose(G, G_ref, rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(gb, gb_ref, rtol=0, atol=1e-9 * scale)


def test_validation_scores_equal_scikit_learns_metrics():
    from sklearn.metrics import mean_squared_error, r2_score

    X, Y = _data(m=2, mean=100.0)
    s = np.random.default_rng(3).uniform(0, 2, X.shape[0])
    W, b = np.random.default_rng(4).standard_normal((8, 2)), np.array([1.0, -2.0])
    got = gram_path.objective(X, Y, s).scores(W, b)
    Z = X @ W + b
    assert got["mse"] == pytest.approx(mean_squared_error(Y, Z, sample_weight=s), rel=1e-9)
    assert got["r2"] == pytest.approx(r2_score(Y, Z, sample_weight=s), rel=1e-9)
    assert got["deviance"] == pytest.approx(_reference(X, Y, s, W, b)[0], rel=1e-9)


def test_fold_sums_equal_the_sums_of_their_rows():
    X, Y = _data(n=300, mean=50.0)
    s = np.random.default_rng(5).uniform(0, 2, 300)
    folds = np.array_split(np.random.default_rng(6).permutation(300), 3)
    train, val, full = gram_path.fold_objectives(X, Y, s, folds)
    W, b = np.ones((8, 1)), np.array([0.5])
    for f, v in enumerate(folds):
        tr = np.setdiff1d(np.arange(300), v)
        for obj, rows in ((train[f], tr), (val[f], v)):
            G, gb = np.empty((8, 1)), np.empty(1)
            L_ref, G_ref, _ = _reference(X[rows], Y[rows], s[rows], W, b)
            assert obj.loss_grad(W, b, G, gb) == pytest.approx(L_ref, rel=1e-10)
            np.testing.assert_allclose(G, G_ref, rtol=1e-10)
    assert full.loss(W, b) == pytest.approx(_reference(X, Y, s, W, b)[0], rel=1e-10)


@pytest.mark.parametrize("reg", ["l1", "elasticnet"])
def test_a_path_on_off_centre_data_reads_x_once_and_every_point_equals_a_cold_fit(reg):
    X, Y = _data(n=400, mean=1e3)
    y = Y[:, 0]
    P = path(X, y, model="linear", reg=reg, n_lams=10, tol=1e-9)
    assert P.n_passes.sum() == 1.0 and P.solver == "cd" and P.converged.all()
    for i in (2, 6, 9):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cold = pipeline.fit(X, y, model="linear", reg=reg, lam=P.lams[i], tol=1e-10,
                                max_iter=20_000)
        assert abs(P.objective[i] - cold.objective) <= 1e-6 * abs(cold.objective), i
        # the path's own loss is the data's (a pass over X, here only)
        assert P.loss[i] == pytest.approx(_reference(X, Y, None, P.W[i], P.b[i])[0], rel=1e-9)


def test_cv_r2_scores_equal_cold_fits_scored_by_scikit_learn():
    from sklearn.metrics import r2_score

    X, Y = _data(n=300, mean=10.0)
    y = Y[:, 0]
    C = cv(X, y, model="linear", reg="l1", folds=3, n_lams=6, scoring="r2", tol=1e-9)
    v = C.folds[1]
    tr = np.setdiff1d(np.arange(300), v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = pipeline.fit(X[tr], y[tr], model="linear", reg="l1", lam=C.lams[3], tol=1e-10)
    ref = r2_score(y[v], pipeline.decision_function(cold, X[v]).ravel())
    assert C.scores[1, 3] == pytest.approx(ref, rel=1e-7)
    assert C.fit.lam == C.lam and C.path.n_passes.sum() == 1.0
