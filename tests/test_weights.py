"""Sample and class weights: kernels against a float64 reference, the weight properties
(integer weights = repeated rows, zero weight = row removed, uniform weights = none, bit for
bit), scikit-learn's weighted fits with the spec's mapping, paths, CV and clear errors."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, logsumexp

import kernels
from pipeline import cv, fit, path
from pipeline.objectives import ArrayObjective
from pipeline.objectives_sparse import SparseObjective
from pipeline.validation import check_targets
from pipeline.weights import class_weights

MODELS = ["linear", "logistic", "softmax", "ovr", "multilabel"]
rel = lambda a, b: float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))  # noqa: E731


def _data(model, n=600, k=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k))
    Z = X[:, :3] + 0.8 * rng.standard_normal((n, 3))
    y = {"linear": X @ rng.standard_normal(k) + rng.standard_normal(n),
         "logistic": (Z[:, 0] > 0).astype(int), "softmax": Z.argmax(1), "ovr": Z.argmax(1),
         "multilabel": (Z > 0).astype(int)}[model]
    return X, y


def _reference(model, X, Y1h, W, b, s):
    """Weighted mean loss and gradient straight from objectives.md ("Weights")."""
    Z = X @ W + b
    if model == "linear":
        per_row, D = np.sum((Z - Y1h) ** 2, axis=1), 2 * (Z - Y1h)
    elif model == "softmax":
        per_row = logsumexp(Z, axis=1) - np.sum(Y1h * Z, axis=1)
        D = np.exp(Z - logsumexp(Z, axis=1, keepdims=True)) - Y1h
    else:
        per_row, D = np.sum(np.logaddexp(0, Z) - Y1h * Z, axis=1), expit(Z) - Y1h
    S = s.sum()
    return (s @ per_row) / S, X.T @ (s[:, None] * D) / S, (s[:, None] * D).sum(0) / S


def _objective(model, X, y, s, **kw):
    T, classes = check_targets(model, y, X.shape[0])
    return ArrayObjective(model, X, T, 0 if classes is None else len(classes),
                          sample_weight=s, **kw)


def _targets_1h(model, y, m):
    if model in ("softmax", "ovr"):
        return np.eye(m)[y]
    return np.asarray(y, dtype=np.float64).reshape(len(y), -1)


@pytest.mark.parametrize("model", MODELS)
def test_weighted_pass_equals_the_reference_and_its_chunked_bits(model):
    X, y = _data(model, n=403)
    rng = np.random.default_rng(1)
    s = rng.uniform(0, 3, X.shape[0]) * (rng.random(X.shape[0]) > 0.2)  # a fifth of zeros
    obj = _objective(model, X, y, s)
    m = obj.n_outputs
    W, b = 0.3 * rng.standard_normal((X.shape[1], m)), 0.1 * rng.standard_normal(m)
    G, gb = np.empty_like(W), np.empty_like(b)
    loss = obj.loss_grad(W, b, G, gb)
    want = _reference(model, X, _targets_1h(model, y, m), W, b, s)
    assert abs(loss - want[0]) <= 1e-12 * abs(want[0])
    assert rel(G, want[1]) <= 1e-12 and rel(gb, want[2]) <= 1e-12
    # Hessian-vector product: the derivative of the weighted gradient along (V, vb)
    V, vb = rng.standard_normal(W.shape), rng.standard_normal(m)
    H, hb = np.empty_like(W), np.empty_like(b)
    obj.hessp(W, b, V, vb, H, hb)
    eps = 1e-6
    Gp = _reference(model, X, _targets_1h(model, y, m), W + eps * V, b + eps * vb, s)
    Gm = _reference(model, X, _targets_1h(model, y, m), W - eps * V, b - eps * vb, s)
    assert rel(H, (Gp[1] - Gm[1]) / (2 * eps)) <= 1e-6
    assert rel(hb, (Gp[2] - Gm[2]) / (2 * eps)) <= 1e-6
    # another chunking of the same rows: the reduction over chunks gives the same bits as
    # the one chunk when the chunks are the kernels' blocks (here: one block per chunk)
    chunked = _objective(model, X, y, s, chunk_rows=kernels.losses.BLOCK_ROWS)
    G2, gb2 = np.empty_like(W), np.empty_like(b)
    assert chunked.loss_grad(W, b, G2, gb2) == loss
    np.testing.assert_array_equal(G2, G)
    np.testing.assert_array_equal(gb2, gb)


def test_weighted_gram_and_logistic_hessian_equal_the_reference():
    X, y = _data("logistic", n=301)
    s = np.random.default_rng(2).uniform(0, 2, X.shape[0])
    Xa = np.column_stack([X, np.ones(len(X))])
    obj = _objective("linear", X, y.astype(float), s)
    A, C = obj.gram()
    assert rel(A, Xa.T @ (s[:, None] * Xa) / s.sum()) <= 1e-13
    assert rel(C[:, 0], Xa.T @ (s * y) / s.sum()) <= 1e-13
    w, b0 = np.linspace(-0.5, 0.5, X.shape[1]), 0.2
    d = expit(X @ w + b0) * (1 - expit(X @ w + b0))
    H = _objective("logistic", X, y, s).logistic_hessian(w, b0)
    assert rel(H, Xa.T @ ((s * d)[:, None] * Xa) / s.sum()) <= 1e-13


@pytest.mark.parametrize("model", MODELS)
def test_sparse_weighted_pass_equals_the_dense_one(model):
    X, y = _data(model, n=350, k=12)
    X[np.random.default_rng(3).random(X.shape) < 0.7] = 0.0
    s = np.random.default_rng(4).uniform(0, 2, X.shape[0])
    T, classes = check_targets(model, y, X.shape[0])
    nc = 0 if classes is None else len(classes)
    dense = ArrayObjective(model, X, T, nc, sample_weight=s)
    sparse = SparseObjective(model, sp.csr_matrix(X), T, nc, sample_weight=s)
    m = dense.n_outputs
    rng = np.random.default_rng(5)
    W, b = 0.3 * rng.standard_normal((X.shape[1], m)), 0.1 * rng.standard_normal(m)
    V, vb = rng.standard_normal(W.shape), rng.standard_normal(m)
    out = []
    for obj in (dense, sparse):
        G, gb, H, hb = (np.empty_like(W), np.empty_like(b), np.empty_like(W), np.empty_like(b))
        loss = obj.loss_grad(W, b, G, gb)
        obj.hessp(W, b, V, vb, H, hb)
        out.append((loss, G, gb, H, hb, *obj.gram()))
    for got, want in zip(out[1], out[0], strict=True):
        assert rel(np.asarray(got), np.asarray(want)) <= 1e-12
    if model == "logistic":
        assert rel(sparse.logistic_hessian(W[:, 0], b[0]),
                   dense.logistic_hessian(W[:, 0], b[0])) <= 1e-12


# ----------------------------------------------------------------------------- properties
CASES = [("linear", "l2", "auto"), ("linear", "l1", "auto"),
         ("linear", "elasticnet", "split_lbfgs"),
         ("logistic", "l2", "auto"), ("logistic", "l1", "auto"), ("logistic", "l2", "newton"),
         ("logistic", "l2", "sgd"), ("softmax", "l2", "auto"), ("softmax", "l1", "auto"),
         ("softmax", "l2", "newton"), ("ovr", "elasticnet", "auto"), ("multilabel", "l1", "auto")]


def _fit(X, y, model, reg, solver, **kw):
    tol = 1e-7 if solver == "sgd" else 1e-10
    return fit(X, y, model=model, reg=reg, lam=0.05, solver=solver, tol=tol, max_iter=4000,
               **kw)


@pytest.mark.parametrize("model, reg, solver", CASES, ids=["-".join(c) for c in CASES])
def test_integer_weights_equal_repeated_rows_and_zero_equals_removed(model, reg, solver):
    X, y = _data(model)
    reps = np.random.default_rng(6).integers(0, 4, X.shape[0])  # 0 removes the row
    weighted = _fit(X, y, model, reg, solver, sample_weight=reps)
    repeated = _fit(np.repeat(X, reps, axis=0), np.repeat(y, reps, axis=0), model, reg, solver)
    tol = 1e-5 if solver == "sgd" else 1e-7
    assert rel(weighted.W, repeated.W) <= tol and rel(weighted.b, repeated.b) <= tol
    assert abs(weighted.objective - repeated.objective) <= 1e-9 * abs(repeated.objective)


@pytest.mark.parametrize("model, reg, solver", [c for c in CASES if c[2] != "sgd"],
                         ids=["-".join(c) for c in CASES if c[2] != "sgd"])
def test_uniform_weights_change_no_bit(model, reg, solver):
    """Weights of 1 (and of 2: a power of two scales every sum exactly) give the unweighted
    fit's bits: the kernels multiply by exactly 1 and S equals n."""
    X, y = _data(model, n=300)
    plain = _fit(X, y, model, reg, solver)
    for value in (1.0, 2.0):
        got = _fit(X, y, model, reg, solver, sample_weight=np.full(X.shape[0], value))
        np.testing.assert_array_equal(got.W, plain.W)
        np.testing.assert_array_equal(got.b, plain.b)
        assert got.n_iter == plain.n_iter


def test_a_class_weight_map_is_the_sample_weight_of_each_rows_class():
    X, y = _data("softmax", n=400)
    cw = {0: 2.0, 2: 0.5}  # class 1 left out: weighs 1
    by_class = fit(X, y, model="softmax", reg="l2", lam=0.05, class_weight=cw, tol=1e-10)
    by_row = fit(X, y, model="softmax", reg="l2", lam=0.05, tol=1e-10,
                 sample_weight=np.array([2.0, 1.0, 0.5])[y])
    np.testing.assert_array_equal(by_class.W, by_row.W)


# ----------------------------------------------------------------------------- scikit-learn
def test_weighted_logistic_and_ridge_and_lasso_equal_scikit_learn_with_the_spec_mapping():
    from sklearn.linear_model import Lasso, LogisticRegression, Ridge

    X, y = _data("logistic", n=500)
    s = np.random.default_rng(7).uniform(0.1, 3.0, X.shape[0])
    k, S, lam = X.shape[1], s.sum(), 0.05
    ours = fit(X, y, model="logistic", reg="l2", lam=lam, sample_weight=s, tol=1e-10)
    sk = LogisticRegression(C=k / (2 * S * lam), tol=1e-12, max_iter=10_000).fit(
        X, y, sample_weight=s)
    assert rel(ours.W[:, 0], sk.coef_[0]) <= 1e-6 and abs(ours.b[0] - sk.intercept_[0]) <= 1e-6
    Xl, yl = _data("linear", n=500)
    ours = fit(Xl, yl, model="linear", reg="l2", lam=lam, sample_weight=s, tol=1e-12)
    sk = Ridge(alpha=S * lam / k, tol=1e-12).fit(Xl, yl, sample_weight=s)
    assert rel(ours.W[:, 0], sk.coef_) <= 1e-8
    ours = fit(Xl, yl, model="linear", reg="l1", lam=lam, sample_weight=s, tol=1e-12)
    sk = Lasso(alpha=lam / (2 * k), tol=1e-14, max_iter=100_000).fit(Xl, yl, sample_weight=s)
    assert rel(ours.W[:, 0], sk.coef_) <= 1e-6


def test_balanced_class_weight_equals_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    X, y = _data("softmax", n=500)
    y = np.where(np.arange(len(y)) % 5 == 0, 2, y % 2)  # unbalanced classes 0, 1, 2
    S = float(len(y))  # balanced weights sum to n: sum_c n_c * n / (m n_c)
    per_class = class_weights("balanced", "softmax", np.unique(y), y)
    np.testing.assert_allclose(per_class, len(y) / (3 * np.bincount(y)), rtol=1e-15)
    assert per_class[y].sum() == pytest.approx(S, rel=1e-12)
    lam, k = 0.05, X.shape[1]
    ours = fit(X, y, model="softmax", reg="l2", lam=lam, class_weight="balanced", tol=1e-10)
    sk = LogisticRegression(C=k / (2 * S * lam), class_weight="balanced", tol=1e-12,
                            max_iter=10_000).fit(X, y)
    # scikit-learn's softmax has one redundant direction; compare the probabilities
    Z = X @ ours.W + ours.b
    P = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
    assert np.max(np.abs(P - sk.predict_proba(X))) <= 1e-6


# ----------------------------------------------------------------------------- paths and CV
def test_weighted_lam_max_gives_zero_weights_and_path_points_equal_cold_fits():
    X, y = _data("logistic", n=400)
    s = np.random.default_rng(8).uniform(0, 2, X.shape[0])
    P = path(X, y, model="logistic", reg="l1", n_lams=8, lam_min_ratio=0.05, sample_weight=s,
             tol=1e-10)
    assert np.all(P.W[0] == 0.0) and np.any(P.W[1] != 0.0)
    below = fit(X, y, model="logistic", reg="l1", lam=0.99 * P.lam_max, sample_weight=s,
                tol=1e-10)
    assert np.any(below.W != 0.0)
    cold = fit(X, y, model="logistic", reg="l1", lam=float(P.lams[5]), sample_weight=s,
               tol=1e-10)
    assert rel(P.W[5], cold.W) <= 1e-6


def test_cv_with_unit_weights_is_the_unweighted_cv_and_weights_move_the_scores():
    X, y = _data("linear", n=300)
    kw = dict(model="linear", reg="l1", folds=3, n_lams=6, lam_min_ratio=0.01, tol=1e-9)
    plain = cv(X, y, **kw)
    ones = cv(X, y, sample_weight=np.ones(X.shape[0]), **kw)
    np.testing.assert_array_equal(ones.scores, plain.scores)
    assert ones.lam == plain.lam
    s = np.random.default_rng(9).uniform(0, 2, X.shape[0])
    weighted = cv(X, y, sample_weight=s, **kw)
    assert not np.array_equal(weighted.scores, plain.scores)
    assert weighted.lam_1se >= weighted.lam_min


# ----------------------------------------------------------------------------- bad input
X_BAD, Y_BAD = _data("logistic", n=40)
BAD = [
    ({"sample_weight": -np.ones(40)}, ValueError, "negative"),
    ({"sample_weight": np.r_[np.nan, np.ones(39)]}, ValueError, "non-finite"),
    ({"sample_weight": np.ones(39)}, ValueError, "shape (40,)"),
    ({"sample_weight": np.ones((40, 1))}, ValueError, "shape (40,)"),
    ({"sample_weight": np.zeros(40)}, ValueError, "zero for every row"),
    ({"sample_weight": np.array(["a"] * 40)}, TypeError, "numbers"),
    ({"class_weight": {7: 2.0}}, ValueError, "class 7"),
    ({"class_weight": {1: -1.0}}, ValueError, ">= 0"),
    ({"class_weight": "balance"}, ValueError, "'balanced'"),
    ({"class_weight": 3}, TypeError, "mapping"),
    ({"model": "linear", "class_weight": "balanced"}, ValueError, "sample_weight"),
    ({"backend": "cuda", "sample_weight": np.ones(40)}, ValueError, "backend='cuda'"),
]


@pytest.mark.parametrize("kw, error, words", BAD, ids=[w for *_, w in BAD])
def test_bad_weights_are_clear_errors_before_any_work(kw, error, words):
    kw = {"model": "logistic", **kw}
    with pytest.raises(error, match=None) as info:
        fit(X_BAD, Y_BAD, **kw)
    assert words in str(info.value)
