"""Sparse input: the CSR kernels against the dense ones, thread-count independence, every model
and penalty to the dense optimum through ``pipeline.fit``, format conversion and errors."""

import warnings

import numba
import numpy as np
import pytest
import scipy.sparse as sp

import kernels
import pipeline
from kernels import sparse as ks
from kernels.gram import logistic_hessian
from pipeline.objectives_sparse import SparseObjective
from pipeline.solvers import choose_auto
from pipeline.validation import check_sparse_X

N, K = 240, 23
KIND_CASES = [(kernels.LINEAR, 2), (kernels.SIGMOID, 1), (kernels.SIGMOID, 3),
              (kernels.SOFTMAX, 4)]


def _csr(n, k, density, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = sp.random(n, k, density=density, format="csr", random_state=seed, dtype=np.float64)
    X.data = rng.standard_normal(X.nnz)
    X = X.tolil()
    X[3, :] = 0.0  # an empty row
    X[:, min(5, k - 1)] = 0.0  # an empty column
    return X.tocsr().astype(dtype)


@pytest.fixture(scope="module", params=["float64", "float32"])
def data(request):
    X = _csr(N, K, 0.25, 1, request.param)
    assert X[3].nnz == 0 and X[:, 5].nnz == 0
    return X, np.ascontiguousarray(X.toarray())


def _targets(kind, m, rng):
    if kind == kernels.SOFTMAX:
        return rng.integers(0, m, (N, 1)).astype(np.float64)
    if kind == kernels.SIGMOID:
        return (rng.random((N, m)) < 0.4).astype(np.float64)
    return rng.standard_normal((N, m))


def _close(a, b, tol=1e-12):
    a, b = np.asarray(a), np.asarray(b)
    assert np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(b)))


def _run_all(X, kind, m, seed=0, block=ks.BLOCK_ROWS, columns=True):
    """Every kernel's output on the CSR X at a seeded point, as a list of arrays (the gradient
    and Hessian products by the column pass, or by per-block partials)."""
    rng = np.random.default_rng(seed)
    k = X.shape[1]
    T = _targets(kind, m, rng)
    W, b = rng.standard_normal((k, m)), rng.standard_normal(m)
    V, vb = rng.standard_normal((k, m)), rng.standard_normal(m)
    csr = (X.data, X.indices, X.indptr)
    csc = ks.csc_of(*csr, k)
    G, gb, H, hb = np.empty((k, m)), np.empty(m), np.empty((k, m)), np.empty(m)
    via = csc if columns else None
    loss = ks.loss_grad(kind, csr, via, T, W, b, G, gb, block=block)
    ks.hessp(kind, csr, via, W, b, V, vb, H, hb, block=block)
    Z = ks.decision_function(csr, W, b, k)
    A, C = ks.gram(csr, csc, T)
    s = rng.random(X.shape[0])
    Aw, Cw = ks.gram(csr, csc, T, weights=s)
    return [np.array(loss), G, gb, H, hb, Z, A, C, Aw, Cw], (T, W, b, V, vb, s)


@pytest.mark.parametrize("columns", [True, False], ids=["csc", "partials"])
@pytest.mark.parametrize("kind,m", KIND_CASES)
def test_every_sparse_kernel_equals_the_dense_kernel(data, kind, m, columns):
    X, Xd = data
    (loss, G, gb, H, hb, Z, A, C, Aw, Cw), (T, W, b, V, vb, s) = _run_all(X, kind, m,
                                                                          columns=columns)
    k = Xd.shape[1]
    Gd, gbd, Hd, hbd = np.empty((k, m)), np.empty(m), np.empty((k, m)), np.empty(m)
    _close(loss, kernels.loss_grad(kind, Xd, T, W, b, Gd, gbd))
    kernels.hessp(kind, Xd, W, b, V, vb, Hd, hbd)
    for got, want in [(G, Gd), (gb, gbd), (H, Hd), (hb, hbd),
                      (Z, kernels.decision_function(Xd, W, b))]:
        _close(got, want)
    Ad, Cd = kernels.gram(Xd, T)
    _close(A, Ad)
    _close(C, Cd)
    assert np.array_equal(A, A.T) and np.array_equal(Aw, Aw.T)
    Xa = np.column_stack([Xd.astype(np.float64), np.ones(N)])
    _close(Aw, Xa.T @ (s[:, None] * Xa) / N)
    _close(Cw, Xa.T @ (s[:, None] * T) / N)


def test_logistic_hessian_equals_the_dense_one(data):
    X, Xd = data
    rng = np.random.default_rng(3)
    T = _targets(kernels.SIGMOID, 1, rng)
    w = rng.standard_normal(K)
    obj = SparseObjective("logistic", X, T, encoded=True, n_outputs=1)
    _close(obj.logistic_hessian(w, 0.3), logistic_hessian(Xd, w, 0.3))


@pytest.mark.parametrize("columns", [True, False], ids=["csc", "partials"])
@pytest.mark.parametrize("kind,m", KIND_CASES)
def test_kernels_bit_identical_for_one_and_two_threads(kind, m, columns):
    X = _csr(N, K, 0.25, 2)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _ = _run_all(X, kind, m, block=16, columns=columns)  # 15 row blocks
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two, _ = _run_all(X, kind, m, block=16, columns=columns)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two, strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind,m", KIND_CASES)
def test_hessian_products_from_the_kept_curvature_are_bit_identical(kind, m, weighted):
    X = _csr(N, K, 0.25, 4)
    rng = np.random.default_rng(5)
    T = _targets(kind, m, rng)
    if weighted:
        T = np.column_stack([T, rng.random(N)])
    csr = (X.data, X.indices, X.indptr)
    W, b = rng.standard_normal((K, m)), rng.standard_normal(m)
    Q = np.full((N, m), np.nan)
    for mode in (ks.CURV_STORE, ks.CURV_USE, ks.CURV_USE):
        V, vb = rng.standard_normal((K, m)), rng.standard_normal(m)
        H, hb, Hc, hbc = np.empty((K, m)), np.empty(m), np.empty((K, m)), np.empty(m)
        ks.hessp(kind, csr, None, W, b, V, vb, H, hb, T=T, weighted=weighted)
        ks.hessp(kind, csr, None, W, b, V, vb, Hc, hbc, T=T, weighted=weighted, curv=Q,
                 curv_mode=mode)
        assert H.tobytes() == Hc.tobytes() and hb.tobytes() == hbc.tobytes()
    assert np.isfinite(Q).all()


def test_objective_keeps_the_curvature_only_at_the_same_point():
    X = _csr(N, K, 0.25, 6)
    rng = np.random.default_rng(7)
    obj = SparseObjective("softmax", X, _targets(kernels.SOFTMAX, 4, rng), encoded=True,
                          n_outputs=4)
    W, b = rng.standard_normal((K, 4)), rng.standard_normal(4)
    assert obj._curv_mode(W, b) == ks.CURV_STORE
    assert obj._curv_mode(W.copy(), b.copy()) == ks.CURV_USE  # equal values, other arrays
    W2 = W.copy()
    W2[0, 0] += 1e-15
    assert obj._curv_mode(W2, b) == ks.CURV_STORE
    V, vb = rng.standard_normal((K, 4)), rng.standard_normal(4)
    H, hb, H2, hb2 = np.empty((K, 4)), np.empty(4), np.empty((K, 4)), np.empty(4)
    obj.hessp(W, b, V, vb, H, hb)  # a new point: recomputed (W2's curvature is kept)
    obj.hessp(W, b, V, vb, H2, hb2)  # the same point: from the kept curvature
    Hd, hbd = np.empty((K, 4)), np.empty(4)
    kernels.hessp(kernels.SOFTMAX, np.ascontiguousarray(X.toarray()), W, b, V, vb, Hd, hbd)
    assert H.tobytes() == H2.tobytes()
    _close(H2, Hd)


def test_wide_outputs_take_the_column_pass_with_the_same_optimum(problem, monkeypatch):
    X, Xd, ys = problem
    kw = {"model": "softmax", "reg": "l2", "lam": 0.05, "solver": "lbfgs"}
    ref = _fit(X, ys["softmax"], **kw)
    monkeypatch.setattr(ks, "PARTIAL_BYTES", 0)  # k m "too large": the CSC column pass
    assert not SparseObjective("softmax", X, np.zeros((300, 1)), 4).partials
    res = _fit(X, ys["softmax"], **kw)
    assert abs(res.objective - ref.objective) <= 1e-12 * abs(ref.objective)


def test_column_tasks_split_nonzeros_and_cover_every_column():
    colptr = np.array([0, 50, 50, 51, 52, 100, 101, 101])
    tasks = ks.column_tasks(colptr, n_tasks=3)
    assert tasks[0] == 0 and tasks[-1] == 7 and np.all(np.diff(tasks) > 0)


def test_objective_moments_and_lipschitz_are_sparse_versions_of_the_dense_ones(data):
    X, Xd = data
    T = np.zeros((N, 1))
    obj = SparseObjective("logistic", X, T, encoded=True, n_outputs=1)
    mean, std = obj.column_moments()
    Xd64 = Xd.astype(np.float64)
    _close(mean, Xd64.mean(axis=0))
    _close(std, Xd64.std(axis=0), 1e-10)
    dense = pipeline.objectives.ArrayObjective("logistic", Xd, T, n_outputs=1, encoded=True)
    assert obj.lipschitz() == pytest.approx(dense.lipschitz(), rel=1e-10)
    assert obj.abs_max() == pytest.approx(float(np.abs(Xd).max()))
    sub = obj.sample(np.arange(0, N, 3))
    assert isinstance(sub, SparseObjective) and sub.counter is obj.counter


# ------------------------------------------------------------------------------ fits
def _problem(seed=4):
    X = _csr(300, 20, 0.3, seed)
    Xd = X.toarray()
    rng = np.random.default_rng(seed)
    z = Xd @ rng.standard_normal(20)
    noisy = z + rng.standard_normal(300)
    ys = {"linear": z + 0.5 * rng.standard_normal(300),
          "logistic": (noisy > 0).astype(int),
          "softmax": np.digitize(noisy, [-1.0, 0.0, 1.0]),
          "ovr": np.digitize(noisy, [-1.0, 0.0, 1.0]),
          "multilabel": np.column_stack([noisy > 0, z + rng.standard_normal(300) > 0.5]
                                        ).astype(int)}
    return X, Xd, ys


@pytest.fixture(scope="module")
def problem():
    return _problem()


def _fit(X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline.fit(X, y, tol=1e-10, max_iter=20_000, **kw)


@pytest.mark.parametrize("reg", ["none", "l2", "l1", "elasticnet"])
@pytest.mark.parametrize("model", ["linear", "logistic", "softmax", "ovr", "multilabel"])
def test_every_model_and_penalty_reaches_the_dense_optimum(problem, model, reg):
    X, Xd, ys = problem
    kw = {"model": model, "reg": reg, "lam": 0.0 if reg == "none" else 0.05}
    rs, rd = _fit(X, ys[model], **kw), _fit(Xd, ys[model], **kw)
    assert rs.converged and rd.converged  # auto may choose differently for sparse X
    assert abs(rs.objective - rd.objective) <= 1e-9 * abs(rd.objective)
    np.testing.assert_allclose(pipeline.predict(rs, X), pipeline.predict(rd, Xd))


@pytest.mark.parametrize("solver,reg", [("lbfgs", "l2"), ("newton", "l2"), ("agd", "l1"),
                                        ("gd", "elasticnet"), ("split_lbfgs", "l1"),
                                        ("prox_newton", "l1"), ("sgd", "l2")])
def test_named_solvers_reach_the_dense_optimum(problem, solver, reg):
    X, Xd, ys = problem
    kw = {"model": "softmax", "reg": reg, "lam": 0.05, "solver": solver}
    if solver == "sgd":
        kw["max_iter"] = 200
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rs = pipeline.fit(X, ys["softmax"], tol=1e-6, **kw)
            rd = pipeline.fit(Xd, ys["softmax"], tol=1e-6, **kw)
        assert rs.objective == pytest.approx(rd.objective, rel=1e-6)
        return
    rs, rd = _fit(X, ys["softmax"], **kw), _fit(Xd, ys["softmax"], **kw)
    assert rs.converged and abs(rs.objective - rd.objective) <= 1e-9 * abs(rd.objective)


def test_csc_coo_and_float32_input(problem):
    X, Xd, ys = problem
    y = ys["logistic"]
    ref = _fit(X, y, model="logistic", reg="l2", lam=0.05, solver="lbfgs")
    for other in (X.tocsc(), X.tocoo(), sp.csr_array(X)):
        res = _fit(other, y, model="logistic", reg="l2", lam=0.05, solver="lbfgs")
        assert res.W.tobytes() == ref.W.tobytes()
    assert check_sparse_X(X) is X  # CSR float64: used as it is
    assert check_sparse_X(X.tocsc()).format == "csr"
    X32 = X.astype(np.float32)
    assert check_sparse_X(X32, "float32") is X32
    r32 = _fit(X32, y, model="logistic", reg="l2", lam=0.05, solver="lbfgs", dtype="float32")
    d32 = _fit(Xd.astype(np.float32), y, model="logistic", reg="l2", lam=0.05, solver="lbfgs",
               dtype="float32")
    assert abs(r32.objective - d32.objective) <= 1e-9 * abs(d32.objective)
    _close(pipeline.decision_function(r32, X32), pipeline.decision_function(r32, Xd), 1e-6)


def test_auto_avoids_the_dense_hessian_for_wide_sparse_data():
    assert choose_auto("logistic", "l1", 10**6, 10**5, sparse=True) == "split_lbfgs"
    assert choose_auto("logistic", "l2", 10**6, 10**5, sparse=True) == "lbfgs"
    assert choose_auto("softmax", "l1", 10**6, 10**5, sparse=True) == "prox_newton"
    assert choose_auto("linear", "l2", 10**3, 10**5, sparse=True) == "newton"
    assert choose_auto("linear", "l1", 10**3, 100, sparse=True) == "cd"
    assert choose_auto("logistic", "l2", 10**3, 100, sparse=True) == "newton"
    assert choose_auto("logistic", "l2", 10**3, 100) == "prox_newton"  # dense: unchanged


def test_clear_errors():
    wide = _csr(60, ks.GRAM_MAX_FEATURES + 1, 0.001, 5)
    y = np.random.default_rng(0).standard_normal(60)
    with pytest.raises(ValueError, match="dense .* matrix.*lbfgs"):
        pipeline.fit(wide, y, model="linear", solver="closed_form")
    bad = _csr(30, 4, 0.5, 6)
    bad.data[2] = np.nan
    with pytest.raises(ValueError, match="NaN/inf stored value"):
        pipeline.fit(bad, np.arange(30) % 2, model="logistic")
    with pytest.raises(ValueError, match="backend='cpu' only"):
        pipeline.fit(_csr(30, 4, 0.5, 6), np.arange(30) % 2, model="logistic",
                     backend="cuda")
    with pytest.raises(ValueError, match="empty"):
        pipeline.fit(sp.csr_matrix((0, 4)), np.zeros(0), model="linear")
    res = _fit(_csr(30, 4, 0.5, 6), np.arange(30) % 2, model="logistic", reg="l2", lam=0.1)
    with pytest.raises(ValueError, match="3 features but the model was fit on 4"):
        pipeline.predict(res, _csr(5, 3, 0.5, 7))
    with pytest.raises(TypeError, match="pipeline.fit, predict"):
        pipeline.validation.check_X(_csr(5, 3, 0.5, 7))


@pytest.mark.parametrize("model, reg", [("logistic", "l1"), ("linear", "elasticnet"),
                                        ("softmax", "l1")])
def test_weighted_path_and_cv_on_sparse_x_equal_the_dense_ones(model, reg):
    """path and cv take a CSR X as it is (the strong rule's working sets are CSR column
    copies); with row weights every point and every fold score equals the dense run's."""
    X = _csr(300, 25, 0.3, 7)
    Xd = X.toarray()
    rng = np.random.default_rng(8)
    z = Xd[:, 0] - Xd[:, 1] + 0.3 * rng.standard_normal(300)
    y = {"logistic": z > 0, "linear": z, "softmax": np.digitize(z, [-0.5, 0.5])}[model]
    s = rng.uniform(0.0, 2.0, 300)
    kw = dict(model=model, reg=reg, n_lams=6, lam_min_ratio=0.02, tol=1e-10, sample_weight=s)
    dense, sparse = pipeline.path(Xd, y, **kw), pipeline.path(X, y, **kw)
    assert sparse.lam_max == pytest.approx(dense.lam_max, rel=1e-12)
    assert np.all(sparse.W[0] == 0.0)
    _close(sparse.W, dense.W, 1e-6)
    cv_d, cv_s = pipeline.cv(Xd, y, folds=3, **kw), pipeline.cv(X, y, folds=3, **kw)
    _close(cv_s.scores, cv_d.scores, 1e-8)
    assert cv_s.lam == pytest.approx(cv_d.lam, rel=1e-12)


def test_estimators_fit_sparse_input_to_the_dense_fit():
    from pipeline.estimators import LogisticClassifier, SoftmaxClassifierCV

    X = _csr(200, 12, 0.4, 9)
    y = (X.toarray()[:, 0] > 0).astype(int)
    dense = LogisticClassifier(reg="l1", lam=0.02, tol=1e-10).fit(X.toarray(), y)
    sparse = LogisticClassifier(reg="l1", lam=0.02, tol=1e-10).fit(X.tocsc(), y)
    _close(sparse.coef_, dense.coef_, 1e-7)
    _close(sparse.predict_proba(X), dense.predict_proba(X.toarray()), 1e-7)
    ycls = np.digitize(X.toarray()[:, 1], [-0.3, 0.3])
    cvs = SoftmaxClassifierCV(folds=3, n_lams=5).fit(X, ycls)
    cvd = SoftmaxClassifierCV(folds=3, n_lams=5).fit(X.toarray(), ycls)
    assert cvs.lam_ == cvd.lam_
