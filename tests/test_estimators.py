"""The scikit-learn estimators: scikit-learn's own checks, and the ecosystem they must join."""

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline import estimators as est

PLAIN = [est.LinearRegressor(), est.LogisticClassifier(), est.SoftmaxClassifier(),
         est.OvRClassifier(), est.MultiLabelClassifier()]


@parametrize_with_checks(PLAIN)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _blobs(n=300, k=5, m=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, m, n)
    X = rng.standard_normal((n, k)) + 2.5 * np.eye(m, k)[y]
    return X * 3.0 + 10.0, y


def test_pipeline_grid_search_cross_val_score_and_clone():
    X, y = _blobs()
    pipe = make_pipeline(StandardScaler(), est.SoftmaxClassifier(reg="l1"))
    grid = GridSearchCV(pipe, {"softmaxclassifier__lam": [1e-3, 1e-1, 3.0]}, cv=3).fit(X, y)
    assert grid.best_params_["softmaxclassifier__lam"] in (1e-3, 1e-1)
    assert grid.score(X, y) > 0.8
    scores = cross_val_score(est.OvRClassifier(lam=0.1), X, y, cv=4)
    assert scores.shape == (4,) and scores.min() > 0.7
    twin = clone(est.LogisticClassifier(reg="elasticnet", lam=0.3, l1_ratio=0.2))
    assert twin.get_params()["l1_ratio"] == 0.2 and not hasattr(twin, "result_")


def test_fitted_attributes_follow_scikit_learn(tmp_path):
    import pandas as pd

    X, y = _blobs(m=2)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    clf = est.LogisticClassifier(lam=0.05).fit(frame, np.where(y == 1, "yes", "no"))
    assert clf.coef_.shape == (1, 5) and clf.intercept_.shape == (1,)
    assert list(clf.classes_) == ["no", "yes"] and clf.n_features_in_ == 5
    assert list(clf.feature_names_in_) == list(frame.columns) and clf.n_iter_ >= 1
    import pipeline

    ref = pipeline.fit(X, np.where(y == 1, "yes", "no"), model="logistic", reg="l2", lam=0.05)
    np.testing.assert_array_equal(clf.coef_, ref.W.T)
    reg = est.LinearRegressor(reg="l1", lam=0.1).fit(X, X @ np.arange(5.0) + 1.0)
    assert reg.coef_.shape == (5,) and isinstance(reg.intercept_, float)
    assert reg.score(X, X @ np.arange(5.0) + 1.0) > 0.99


def test_cv_estimators_choose_lambda_with_pipeline_cv():
    X, y = _blobs(m=2)
    X = (X - X.mean(0)) / X.std(0)
    clf = est.LogisticClassifierCV(n_lams=12, folds=4).fit(X, y)
    assert clf.lam_ == clf.cv_result_.lam and clf.lam_ in clf.cv_result_.lams
    import pipeline

    ref = pipeline.cv(X, y, model="logistic", reg="l1", n_lams=12, folds=4)
    assert clf.lam_ == ref.lam
    np.testing.assert_array_equal(clf.coef_, ref.fit.W.T)
    assert clone(clf).get_params()["n_lams"] == 12
