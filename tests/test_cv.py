"""Cross-validation of the path: scores against scikit-learn's, folds, the 1-SE rule, refit."""

import warnings

import numpy as np
import pytest

import pipeline
from pipeline import sources
from pipeline.cv import cv


@pytest.fixture(scope="module")
def diabetes():
    X, y, *_ = sources.bundled("diabetes")
    return (X - X.mean(0)) / X.std(0), y


@pytest.fixture(scope="module")
def cancer():
    X, y, *_ = sources.bundled("breast_cancer")
    return (X - X.mean(0)) / X.std(0), y


def test_lasso_scores_equal_scikit_learns_lasso_cv_on_the_same_folds(diabetes):
    from sklearn.linear_model import LassoCV

    X, y = diabetes
    r = cv(X, y, model="linear", reg="l1", n_lams=25, scoring="mse", tol=1e-10)
    k = X.shape[1]
    splits = [(np.setdiff1d(np.arange(len(y)), v), v) for v in r.folds]
    # Lasso(alpha = lam / (2 k)) (shared/spec/objectives.md, mapping to scikit-learn)
    ref = LassoCV(alphas=r.lams / (2 * k), cv=splits, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(r.scores, ref.mse_path_.T, rtol=1e-7)
    assert r.lam_min == pytest.approx(ref.alpha_ * 2 * k, rel=1e-12)


def test_folds_are_stratified_and_reproducible(cancer):
    X, y = cancer
    a = cv(X, y, model="logistic", reg="l1", n_lams=8, folds=5, seed=3)
    b = cv(X, y, model="logistic", reg="l1", n_lams=8, folds=5, seed=3)
    c = cv(X, y, model="logistic", reg="l1", n_lams=8, folds=5, seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a.folds, b.folds, strict=True))
    assert np.array_equal(a.scores, b.scores)
    assert not all(np.array_equal(u, v) for u, v in zip(a.folds, c.folds, strict=True))
    rows = np.sort(np.concatenate(a.folds))
    assert np.array_equal(rows, np.arange(len(y)))  # every row validated exactly once
    share = y.mean()
    for val in a.folds:
        assert abs(y[val].sum() - share * len(val)) <= 1.0  # stratified: the class shares kept


@pytest.mark.parametrize("scoring", [None, "accuracy", "roc_auc"])
def test_one_se_rule_and_refit(cancer, scoring):
    X, y = cancer
    r = cv(X, y, model="logistic", reg="l1", n_lams=15, scoring=scoring, select="1se")
    assert r.lam_1se >= r.lam_min and r.lam == r.lam_1se
    best = int(np.flatnonzero(r.lams == r.lam_min)[0])
    one = int(np.flatnonzero(r.lams == r.lam_1se)[0])
    sign = 1.0 if r.greater_is_better else -1.0
    assert sign * r.mean[one] >= sign * r.mean[best] - r.se[best]
    assert np.all(sign * r.mean[:one] < sign * r.mean[best] - r.se[best])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = pipeline.fit(X, y, model="logistic", reg="l1", lam=r.lam, tol=1e-10)
    assert abs(r.fit.objective - cold.objective) <= 1e-6 * cold.objective
    assert r.fit.lam == r.lam


def test_multinomial_l1_cv(cancer):
    X, y, *_ = sources.bundled("wine")
    X = (X - X.mean(0)) / X.std(0)
    r = cv(X, y, model="softmax", reg="l1", n_lams=10, folds=3, scoring="accuracy")
    assert r.scores.shape == (3, 10) and r.mean.max() > 0.9
    assert pipeline.predict(r.fit, X).shape == y.shape


@pytest.mark.slow
def test_fold_parallelism_does_not_change_the_result(cancer):
    X, y = cancer
    one = cv(X, y, model="logistic", reg="elasticnet", n_lams=6, folds=4, n_jobs=1)
    two = cv(X, y, model="logistic", reg="elasticnet", n_lams=6, folds=4, n_jobs=2)
    assert np.array_equal(one.scores, two.scores) and one.lam == two.lam


@pytest.mark.parametrize("kwargs, match", [
    ({"folds": 1}, "folds=1 must be an integer from 2"),
    ({"scoring": "mse"}, "scoring='mse' is for model='linear'"),
    ({"scoring": "f1"}, "scoring='f1' is not one of"),
    ({"select": "max"}, "select='max' must be 'min' or '1se'"),
    ({"reg": "none"}, "reg='none' has no lambda"),
])
def test_bad_cv_arguments_are_clear_errors(cancer, kwargs, match):
    X, y = cancer
    args = {"model": "logistic", "reg": "l1", **kwargs}
    with pytest.raises(ValueError, match=match):
        cv(X, y, **args)
