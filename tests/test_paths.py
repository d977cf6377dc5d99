"""Regularisation paths: exact lam_max, warm-started points equal to cold fits, screening."""

import warnings

import numpy as np
import pytest

import pipeline
from pipeline.paths import path

MODELS = ("linear", "logistic", "softmax", "ovr", "multilabel")


def _data(model: str, n: int = 600, k: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k)) * rng.uniform(0.5, 2.0, k)
    W = np.zeros((k, 3))
    W[:4] = rng.standard_normal((4, 3)) * 2.0  # a few features carry the signal
    Z = X @ W + 0.8 * rng.standard_normal((n, 3))
    y = {"linear": Z[:, 0], "logistic": Z[:, 0] > 0, "softmax": Z.argmax(1),
         "ovr": Z.argmax(1), "multilabel": (Z > 0).astype(float)}[model]
    return X, y


def _cold(X, y, model, reg, lam, l1_ratio=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline.fit(X, y, model=model, reg=reg, lam=lam, l1_ratio=l1_ratio, tol=1e-10,
                            max_iter=20_000)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("reg", ["l1", "elasticnet", "l2"])
def test_every_point_equals_a_cold_fit(model, reg):
    X, y = _data(model)
    ratio = 0.3 if reg == "elasticnet" else None
    P = path(X, y, model=model, reg=reg, n_lams=12, l1_ratio=ratio, tol=1e-8)
    assert P.lams.shape == (12,) and np.all(np.diff(P.lams) < 0)
    assert P.converged.all() and np.all(P.residual <= 1e-8)
    for i in (1, 5, 11):
        cold = _cold(X, y, model, reg, P.lams[i], ratio)
        assert abs(P.objective[i] - cold.objective) <= 1e-6 * abs(cold.objective), i
        # the same model (softmax's bias is defined up to a constant: compare probabilities)
        out = pipeline.decision_function if model == "linear" else pipeline.predict_proba
        np.testing.assert_allclose(out(P.at(P.lams[i]), X), out(cold, X), atol=1e-3)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("reg", ["l1", "elasticnet"])
def test_lam_max_is_the_smallest_lambda_with_zero_weights(model, reg):
    X, y = _data(model, seed=1)
    P = path(X, y, model=model, reg=reg, n_lams=2)
    assert P.lams[0] == P.lam_max
    assert np.count_nonzero(P.W[0]) == 0
    # A cold fit exactly at lam_max sits on the boundary |G0| = lam / k, where rounding may
    # leave a weight of 1e-13; a hair above it every weight is exactly 0.
    at = _cold(X, y, model, reg, P.lam_max * (1 + 1e-6))
    below = _cold(X, y, model, reg, 0.98 * P.lam_max)
    assert np.count_nonzero(at.W) == 0 and np.count_nonzero(below.W) > 0


def test_screening_finds_the_same_path_for_less():
    X, y = _data("logistic", n=3000, k=200, seed=2)
    # 4 informative features of 200: down to 0.03 lam_max the path stays sparse (about 50
    # non-zeros at the end), where screening pays (passes over a few columns)
    kw = dict(model="logistic", reg="l1", n_lams=30, tol=1e-8, lam_min_ratio=0.03)
    fast = path(X, y, **kw)
    full = path(X, y, screening=False, **kw)
    np.testing.assert_allclose(fast.objective, full.objective, rtol=1e-7)
    assert np.array_equal(fast.n_nonzero, full.n_nonzero)
    assert fast.n_passes.sum() < 0.5 * full.n_passes.sum(), (fast.n_passes.sum(),
                                                              full.n_passes.sum())


def test_explicit_lambdas_are_sorted_and_points_predict():
    X, y = _data("softmax")
    P = path(X, y, model="softmax", reg="l1", lams=[0.01, 0.1, 0.03])
    assert list(P.lams) == [0.1, 0.03, 0.01]
    labels = pipeline.predict(P.at(0.03), X)
    assert set(np.unique(labels)) <= set(np.unique(y))
    with pytest.raises(ValueError, match="lam=0.05 is not on the path"):
        P.at(0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"reg": "none"}, "reg='none' has no lambda"),
    ({"reg": "l1", "lam_min_ratio": 1.5}, "lam_min_ratio=1.5 must be a number in"),
    ({"reg": "l1", "n_lams": 0}, "n_lams=0 must be an integer"),
    ({"reg": "l1", "lams": [0.1, -1.0]}, "lams must be a non-empty list"),
    ({"reg": "elasticnet", "l1_ratio": 0.0}, "use reg='l2'"),
])
def test_bad_path_arguments_are_clear_errors(kwargs, match):
    X, y = _data("logistic", n=100)
    with pytest.raises(ValueError, match=match):
        path(X, y, model="logistic", **kwargs)
