"""Every CPU kernel against the NumPy float64 reference in tests/naive.py."""

import numpy as np
import pytest
from numba import njit

import kernels
from kernels._intrinsics import fma, row_dot, row_dots4
from tests import naive

KIND = {"linear": kernels.LINEAR, "logistic": kernels.SIGMOID,
        "multilabel": kernels.SIGMOID, "softmax": kernels.SOFTMAX}
WRAPPER = {"linear": kernels.linear_loss_grad, "logistic": kernels.logistic_loss_grad,
           "multilabel": kernels.multilabel_loss_grad, "softmax": kernels.softmax_loss_grad}


def make(model, n=3001, k=9, m=3, scale=1.0, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    m = 1 if model == "logistic" else m
    X = rng.standard_normal((n, k)).astype(dtype)
    W = scale * rng.standard_normal((k, m))
    b = scale * rng.standard_normal(m)
    if model == "linear":
        Y = rng.standard_normal((n, m))
    elif model == "softmax":
        Y = rng.integers(0, m, n)
    else:
        Y = (rng.random((n, m)) < 0.4).astype(float)
    return X, Y, W, b


def kernel_targets(model, Y):
    return np.asarray(Y, dtype=float).reshape(len(Y), -1)


def rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("model", list(KIND))
def test_loss_grad_matches_reference(model):
    # n spans several row blocks, so the block combination is exercised too.
    X, Y, W, b = make(model, n=2 * kernels.losses.BLOCK_ROWS + 77)
    G, gb = np.empty_like(W), np.empty_like(b)
    loss = WRAPPER[model](X, Y, W, b, G, gb)
    ref_loss, ref_G, ref_gb = naive.loss_grad(model, X, Y, W, b)
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    assert rel(G, ref_G) <= 1e-12
    assert rel(gb, ref_gb) <= 1e-12


@pytest.mark.parametrize("model", ["linear", "logistic"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, k", [(1, 3), (3, 1), (7, 700), (45, 100), (2049 + 6, 100)])
def test_single_output_sub_blocks_match_reference(model, dtype, n, k):
    """The one-output pass works in sub-blocks sized by bytes (4 rows when rows are wide) with
    four-row tiles and a prefetch of the rows ahead: every tail (fewer than four rows, a short
    last sub-block, a short last block) must still equal the reference."""
    X, Y, W, b = make(model, n=n, k=k, m=1, dtype=dtype, seed=n + k)
    T = kernel_targets(model, Y)
    Wt, bb = np.ascontiguousarray(W.T), b.copy()
    ref_loss, ref_G, ref_gb = naive.loss_grad(model, X.astype(np.float64), Y, W, b)
    for run in (kernels.losses._loss_grad, kernels.losses._loss_grad_serial):
        G, gb = np.empty_like(W), np.empty_like(b)
        loss = run(KIND[model], X, T, Wt, bb, G, gb, kernels.losses.BLOCK_ROWS, True)
        assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
        assert rel(G, ref_G) <= 1e-12
        assert rel(gb, ref_gb) <= 1e-12


@pytest.mark.parametrize("model", list(KIND))
def test_gradient_matches_finite_differences(model):
    X, Y, W, b = make(model, n=400, k=5, m=3, scale=0.3)
    G, gb = np.empty_like(W), np.empty_like(b)
    WRAPPER[model](X, Y, W, b, G, gb)
    eps = 1e-6
    for j, c in [(0, 0), (4, W.shape[1] - 1), (2, 0)]:
        E = np.zeros_like(W)
        E[j, c] = eps
        fd = (naive.loss_grad(model, X, Y, W + E, b)[0]
              - naive.loss_grad(model, X, Y, W - E, b)[0]) / (2 * eps)
        assert abs(fd - G[j, c]) <= 1e-7 * max(1.0, abs(fd))
    e = np.zeros_like(b)
    e[0] = eps
    fd = (naive.loss_grad(model, X, Y, W, b + e)[0]
          - naive.loss_grad(model, X, Y, W, b - e)[0]) / (2 * eps)
    assert abs(fd - gb[0]) <= 1e-7 * max(1.0, abs(fd))


@pytest.mark.parametrize("model", list(KIND))
def test_float32_storage_matches_reference(model):
    X, Y, W, b = make(model, dtype=np.float32)
    G, gb = np.empty_like(W), np.empty_like(b)
    loss = WRAPPER[model](X, Y, W, b, G, gb)
    ref_loss, ref_G, _ = naive.loss_grad(model, X.astype(np.float64), Y, W, b)
    # Same float32 inputs, float64 arithmetic: agreement is still to rounding.
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    assert rel(G, ref_G) <= 1e-12


@pytest.mark.parametrize("model", list(KIND))
def test_hessp_matches_finite_differences(model):
    X, Y, W, b = make(model, n=500, k=6, m=3, scale=0.3)
    rng = np.random.default_rng(1)
    V, vb = rng.standard_normal(W.shape), rng.standard_normal(b.shape)
    H, hb = np.empty_like(W), np.empty_like(b)
    kernels.hessp(KIND[model], X, W, b, V, vb, H, hb)
    ref_H, ref_hb = naive.hessp(model, X, kernel_targets(model, Y) if model != "softmax" else Y,
                                W, b, V, vb)
    assert rel(H, ref_H) <= 1e-7
    assert rel(hb, ref_hb) <= 1e-7


@pytest.mark.parametrize("model", list(KIND))
def test_huge_logits_stay_finite(model, recwarn):
    X, Y, W, b = make(model, n=300, k=4, scale=1.0)
    X = np.sign(X) * 250.0  # |z| around 1000
    G, gb = np.empty_like(W), np.empty_like(b)
    loss = WRAPPER[model](X, Y, W, b, G, gb)
    ref_loss = naive.loss_grad(model, X, Y, W, b)[0]
    assert np.isfinite(loss) and np.isfinite(G).all() and np.isfinite(gb).all()
    assert abs(loss - ref_loss) <= 1e-10 * abs(ref_loss)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_decision_function_matches_matmul():
    X, _, W, b = make("softmax")
    assert rel(kernels.decision_function(X, W, b), X @ W + b) <= 1e-13


def test_prox_operators_follow_the_spec():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((20, 3))
    soft = np.sign(W) * np.maximum(np.abs(W) - 0.3, 0)
    A = W.copy()
    kernels.prox_l1(A, 0.3)
    np.testing.assert_array_equal(A, soft)
    A = W.copy()
    kernels.prox_l2(A, 0.5)
    np.testing.assert_allclose(A, W / 1.5, rtol=1e-15)
    A = W.copy()
    kernels.prox_elasticnet(A, 0.3, 0.5)
    np.testing.assert_allclose(A, soft / 1.5, rtol=1e-15)


def test_gram_matches_reference():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 7))
    T = rng.standard_normal((20000, 2))
    A, C = kernels.gram(X, T)
    Xa = np.hstack([X, np.ones((len(X), 1))])
    assert rel(A, Xa.T @ Xa / len(X)) <= 1e-12
    assert rel(C, Xa.T @ T / len(X)) <= 1e-12


_TWIN_CACHE_SCRIPT = """
import numpy as np
from kernels import losses as L
X = np.ones((8, 3)); T = np.zeros((8, 1)); Wt = np.zeros((1, 3)); b = np.zeros(1)
G = np.empty((3, 1)); gb = np.empty(1)
f = L._loss_grad_serial  # the serial twin first, as small tests do
f(L.SIGMOID, X, T, Wt, b, G, gb, 4, True)
print(sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
# The parallel kernel's first step for the same arguments (Dispatcher.compile): a load from the
# disk cache. Probed without compiling it (that would cost ~20 s in a fresh cache); the twin's
# own entry, probed the same way, shows that the probe finds what is there.
(sig,) = f.signatures
for g in (f, L._loss_grad):
    print(int(g._cache.load_overload(sig, g.targetctx) is not None))
"""


def test_serial_twin_has_its_own_cache_entry(tmp_path):
    """Compiled first, the serial twin must not be loaded back as the parallel kernel.

    numba keys its cache files by qualified name and line, not by ``parallel``; in a fresh
    cache the twin's compile must be a miss and the parallel kernel must then find nothing to
    load for the same arguments (a hit meant a one-thread "parallel" pass).
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _TWIN_CACHE_SCRIPT], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["0", "1", "1", "0"], proc.stdout


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_finite_finds_every_nan_and_inf(dtype):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5000, 7)).astype(dtype)  # several row blocks
    assert kernels.all_finite(X)
    for value in (np.nan, np.inf, -np.inf):
        for i, j in ((0, 0), (2047, 6), (2048, 0), (4999, 6)):
            Y = X.copy()
            Y[i, j] = value
            assert not kernels.all_finite(Y), (value, i, j)
    assert kernels.all_finite(np.full((3, 2), np.finfo(dtype).max, dtype=dtype))


@njit
def _map_exp_neg(a, out):
    for i in range(a.size):
        out[i] = kernels.losses._exp_neg(a[i])


@njit
def _map_log1p_unit(e, out):
    for i in range(e.size):
        out[i] = kernels.losses._log1p_unit(e[i])


def test_polynomial_exp_and_log1p_are_accurate_to_ulps():
    """The loss kernels' own exp(-a) and log1p(e): within 1 and 3 ulp of libm on their ranges."""
    a = np.concatenate([np.linspace(0.0, 50.0, 400_001), np.geomspace(1e-300, 708.0, 40_001)])
    out = np.empty_like(a)
    _map_exp_neg(a, out)
    ref = np.exp(-a)
    assert np.max(np.abs(out - ref) / np.spacing(ref)) <= 1.5
    _map_exp_neg(np.array([np.inf, 800.0, 708.0]), out[:3])  # clamped at 708, never 0 or nan
    assert out[0] == out[1] == out[2] and abs(out[2] - np.exp(-708.0)) <= 1.5 * np.spacing(out[2])
    e = np.linspace(0.0, 1.0, 400_001)
    out = np.empty_like(e)
    _map_log1p_unit(e, out)
    ref = np.log1p(e)
    assert out[0] == 0.0
    assert np.max(np.abs(out[1:] - ref[1:]) / np.spacing(ref[1:])) <= 3.0


@njit
def _map_log_from_one(v, out):
    for i in range(v.size):
        out[i] = kernels.losses._log_from_one(v[i])


def test_polynomial_log_is_accurate_and_keeps_inf_and_nan():
    """The softmax loss's log(v), v >= 1 (no libm): within 3 ulp, inf and nan passed through."""
    v = np.concatenate([np.linspace(1.0, 10.0, 200_001), np.geomspace(1.0, 1e300, 200_001)])
    out = np.empty_like(v)
    _map_log_from_one(v, out)
    ref = np.log(v)
    assert out[0] == 0.0
    assert np.max(np.abs(out[1:] - ref[1:]) / np.spacing(ref[1:])) <= 3.0
    _map_log_from_one(np.array([np.inf, np.nan]), out[:2])
    assert out[0] == np.inf and np.isnan(out[1])


@njit
def _lane_order_dot(X, i, W, c):
    """The order ``row_dot`` promises, written out with scalars: lane l takes j = l (mod 8)
    over the first k - k % 8 features, the lanes are added in a fixed tree, the rest follow."""
    k = X.shape[1]
    kv = k - k % 8
    lane = np.zeros(8)
    for j in range(0, kv, 8):
        for q in range(8):
            lane[q] = fma(X[i, j + q], W[c, j + q], lane[q])
    s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))
    for j in range(kv, k):
        s = fma(X[i, j], W[c, j], s)
    return s


@njit
def _all_row_dots(X, W):
    one = np.zeros((X.shape[0], W.shape[0]))
    four = np.zeros_like(one)
    ref = np.zeros_like(one)
    for c in range(W.shape[0]):
        for i in range(X.shape[0]):
            one[i, c] = row_dot(X, i, W, c)
            ref[i, c] = _lane_order_dot(X, i, W, c)
        for i in range(0, X.shape[0] - 3, 4):
            four[i, c], four[i + 1, c], four[i + 2, c], four[i + 3, c] = row_dots4(X, i, W, c)
    return one, four, ref


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_dots_add_in_the_fixed_lane_order(dtype):
    """The vector dot products (explicit 8-lane vectors, so the same bits for any vector width)
    equal their scalar spelling bit for bit, for every feature count around the lane width."""
    rng = np.random.default_rng(5)
    for k in (1, 7, 8, 9, 16, 45, 100):
        X = rng.standard_normal((24, k)).astype(dtype)
        W = rng.standard_normal((3, k))
        one, four, ref = _all_row_dots(X, W)
        assert np.array_equal(one, ref) and np.array_equal(four, ref), k
        assert np.allclose(one, X.astype(np.float64) @ W.T, rtol=1e-12, atol=1e-12)
