"""Parity of the CUDA twins (``kernels/gpu.py``) with the CPU kernels and a NumPy reference.

CI has no GPU, so the parity cases run under the numba CUDA simulator. ``NUMBA_ENABLE_CUDASIM``
is read when numba is imported, and this pytest process has already imported numba for the CPU
kernels, so the simulator runs in a subprocess: this file, run as a script, reads the cases from
a pickle, runs the ``gpu_*`` kernels and writes their outputs back; the comparisons happen here.
Tests marked ``gpu`` run the same cases, and a larger one, in process on a real GPU; they skip
cleanly without one.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logsumexp, softmax

import kernels
from kernels import LINEAR, SIGMOID, SOFTMAX

ROOT = Path(__file__).resolve().parents[1]
MODELS = [("linear", LINEAR, 3), ("logistic", SIGMOID, 1), ("multilabel", SIGMOID, 3),
          ("softmax", SOFTMAX, 3)]
DTYPES = [np.float64, np.float32]
PROX = [("l1", (0.3,)), ("l2", (0.5,)), ("elasticnet", (0.3, 0.5))]
PREFETCH_CASES = ["logistic-float32", "softmax-float64"]
TILE_CASES = ["linear-float64", "multilabel-float64", "softmax-float32"]


# --------------------------------------------------------------------------- cases
def _targets(kind, rng, n, m):
    if kind == LINEAR:
        return rng.standard_normal((n, m))
    if kind == SIGMOID:
        return (rng.random((n, m)) < 0.4).astype(np.float64)
    return rng.integers(0, m, size=(n, 1)).astype(np.float64)


def _case(kind, m, dtype, n=200, k=7, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k)).astype(dtype)
    W = rng.standard_normal((k, m)) * scale
    b = rng.standard_normal(m) * scale
    return dict(kind=kind, X=X, T=_targets(kind, rng, n, m), W=W, b=b,
                V=rng.standard_normal((k, m)), vb=rng.standard_normal(m))


def _cases():
    cases = {f"{name}-{np.dtype(dt).name}": _case(kind, m, dt)
             for name, kind, m in MODELS for dt in DTYPES}
    # logits of about +-1000 (|x| ~ 1, |W| ~ 300): the stable forms must stay finite
    for name, kind, m in MODELS[1:]:
        cases[f"{name}-extreme"] = _case(kind, m, np.float64, n=64, scale=300.0, seed=1)
    return cases


def _prox_input():
    return np.random.default_rng(2).standard_normal((7, 3))


# --------------------------------------------------------------------------- gpu side
def _gpu_fused(gpu, c):
    """Loss, gradient and Hessian-vector product of one case, data resident on the device."""
    k, m = c["W"].shape
    Xd, Td = gpu.gpu_put(c["X"]), gpu.gpu_put(c["T"])
    G, gb, H, hb = np.empty((k, m)), np.empty(m), np.empty((k, m)), np.empty(m)
    loss = gpu.gpu_loss_grad(c["kind"], Xd, Td, c["W"], c["b"], G, gb)
    gpu.gpu_hessp(c["kind"], Xd, c["W"], c["b"], c["V"], c["vb"], H, hb)
    return dict(loss=loss, G=G, gb=gb, H=H, hb=hb), Xd


def _gpu_outputs(gpu, cases):
    """Everything the GPU kernels compute for ``cases``: {case: {name: value}}."""
    out = {}
    for name, c in cases.items():
        out[name], Xd = _gpu_fused(gpu, c)
        out[name]["Z"] = gpu.gpu_decision_function(Xd, c["W"], c["b"])
    first = next(iter(cases.values()))                  # host inputs, and a repeated call
    G2, gb2 = np.empty_like(out[next(iter(cases))]["G"]), np.empty(first["W"].shape[1])
    out["repeat"] = dict(loss=gpu.gpu_loss_grad(first["kind"], first["X"], first["T"],
                                                first["W"], first["b"], G2, gb2), G=G2, gb=gb2)
    for reg, args in PROX:
        fn = getattr(gpu, f"gpu_prox_{reg}")
        Wd = gpu.gpu_put(_prox_input())
        fn(Wd, *args)
        Wh = _prox_input()
        fn(Wh, *args)
        out[f"prox-{reg}"] = dict(device=Wd.copy_to_host(), host=Wh)
    out["available"] = gpu.cuda_available()
    # the fallback for wide data (too many features x outputs for registers), on a few cases
    budget, gpu.REGISTER_BUDGET = gpu.REGISTER_BUDGET, 0
    out["tile"] = {name: _gpu_fused(gpu, cases[name])[0] for name in TILE_CASES if name in cases}
    gpu.REGISTER_BUDGET = budget
    prefetch, gpu.PREFETCH = gpu.PREFETCH, not gpu.PREFETCH  # the other register-kernel loop
    out["prefetch-toggled"] = {name: _gpu_fused(gpu, cases[name])[0]
                               for name in PREFETCH_CASES if name in cases}
    gpu.PREFETCH = prefetch
    return out


def _child(cases_path, out_path):
    """Entry point of the simulator subprocess."""
    sys.setswitchinterval(1e-3)  # the simulator's thread barriers poll; switch threads sooner
    from kernels import gpu
    assert gpu.SIMULATOR, "the child must run under NUMBA_ENABLE_CUDASIM=1"
    with open(cases_path, "rb") as f:
        cases = pickle.load(f)
    with open(out_path, "wb") as f:
        pickle.dump(_gpu_outputs(gpu, cases), f)


# --------------------------------------------------------------------------- references
def _ref_loss_grad(kind, X, T, W, b):
    X = X.astype(np.float64)
    n = X.shape[0]
    Z = X @ W + b
    if kind == LINEAR:
        loss, D = ((Z - T) ** 2).sum(), 2.0 * (Z - T)
    elif kind == SIGMOID:
        loss, D = (np.logaddexp(0.0, Z) - T * Z).sum(), expit(Z) - T
    else:
        y = T[:, 0].astype(np.int64)
        rows = np.arange(n)
        loss = (logsumexp(Z, axis=1) - Z[rows, y]).sum()
        D = softmax(Z, axis=1)
        D[rows, y] -= 1.0
    return loss / n, X.T @ D / n, D.sum(axis=0) / n


def _ref_hessp(kind, X, W, b, V, vb):
    X = X.astype(np.float64)
    Z, U = X @ W + b, X @ V + vb
    if kind == LINEAR:
        D = 2.0 * U
    elif kind == SIGMOID:
        s = expit(Z)
        D = U * s * (1.0 - s)
    else:
        P = softmax(Z, axis=1)
        D = P * (U - (P * U).sum(axis=1, keepdims=True))
    return X.T @ D / X.shape[0], D.sum(axis=0) / X.shape[0]


def _cpu(c):
    k, m = c["W"].shape
    G, gb, H, hb = np.empty((k, m)), np.empty(m), np.empty((k, m)), np.empty(m)
    loss = kernels.loss_grad(c["kind"], c["X"], c["T"], c["W"], c["b"], G, gb)
    kernels.hessp(c["kind"], c["X"], c["W"], c["b"], c["V"], c["vb"], H, hb)
    Z = kernels.decision_function(c["X"], c["W"], c["b"])
    return dict(loss=loss, G=G, gb=gb, H=H, hb=hb, Z=Z)


def _assert_parity(c, got, rtol=1e-10):
    """GPU outputs (all of ``got``'s keys) equal the CPU kernels and the NumPy float64
    reference on the same X."""
    loss, G, gb = _ref_loss_grad(c["kind"], c["X"], c["T"], c["W"], c["b"])
    H, hb = _ref_hessp(c["kind"], c["X"], c["W"], c["b"], c["V"], c["vb"])
    ref = dict(loss=loss, G=G, gb=gb, H=H, hb=hb,
               Z=c["X"].astype(np.float64) @ c["W"] + c["b"])
    cpu = _cpu(c)
    for key, want in ref.items():
        if key not in got:
            continue
        assert np.all(np.isfinite(got[key])), key
        scale = np.abs(want).max() + 1e-300
        np.testing.assert_allclose(got[key], want, rtol=rtol, atol=rtol * scale, err_msg=key)
        np.testing.assert_allclose(got[key], cpu[key], rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{key} vs CPU")


# --------------------------------------------------------------------------- simulator test
@pytest.fixture(scope="module")
def cases():
    return _cases()


def _run_simulator(cases, d):
    """Run every case once under the simulator, in a subprocess; return its outputs."""
    with open(d / "cases.pkl", "wb") as f:
        pickle.dump(cases, f)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, str(d / "cases.pkl"), str(d / "out.pkl")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "No module named 'numba.cuda" in proc.stderr:
        pytest.skip("this numba has no numba.cuda; pip install -e '.[cuda]' for the simulator")
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(d / "out.pkl", "rb") as f:
        return pickle.load(f)


def test_simulator_parity(cases, tmp_path):
    """All cases in one test (one ~10 s subprocess, whichever xdist worker runs it).

    Each case: loss, gradient, Hessian-vector product and logits match the CPU kernels and the
    NumPy reference for every kind, float64 and float32 X, with intercept and several outputs,
    in the register kernel and (a few cases) the tile kernel; logits of +-1000 stay finite; a
    repeated call (host inputs) is bit-identical; the prox steps equal the CPU ones on device
    and host arrays.
    """
    sim = _run_simulator(cases, tmp_path)
    failures = []
    for name, c in cases.items():
        try:
            _assert_parity(c, sim[name])
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    for variant, names in (("tile", TILE_CASES), ("prefetch-toggled", PREFETCH_CASES)):
        for name in names:
            try:
                _assert_parity(cases[name], sim[variant][name])
            except AssertionError as exc:
                failures.append(f"{name} ({variant}): {exc}")
    first = next(iter(cases))
    for key in ("loss", "G", "gb"):
        if not np.array_equal(sim["repeat"][key], sim[first][key]):
            failures.append(f"repeat: {key} differs between two identical calls")
    for reg, args in PROX:
        want = _prox_input()
        getattr(kernels, f"prox_{reg}")(want, *args)
        for where in ("device", "host"):
            if not np.array_equal(sim[f"prox-{reg}"][where], want):
                failures.append(f"prox_{reg} ({where} array) differs from the CPU prox")
    if not sim["available"][0]:
        failures.append(f"cuda_available() under the simulator: {sim['available']}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- import contract
@pytest.fixture(scope="module")
def plain_import():
    """Import kernels.gpu in a subprocess without the simulator: (returncode, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", "import kernels.gpu"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def test_import_without_gpu_names_the_fix(plain_import):
    rc, err = plain_import
    if rc == 0:
        pytest.skip("a CUDA GPU is present")
    last = err.strip().splitlines()[-1]
    assert last.startswith("ImportError"), last
    assert "pip install -e '.[cuda]'" in last and "backend=cpu" in last, last


# --------------------------------------------------------------------------- real GPU
@pytest.fixture(scope="module")
def real_gpu(plain_import):
    if plain_import[0] != 0 or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("needs a real CUDA GPU")
    from kernels import gpu
    return gpu


@pytest.mark.gpu
def test_gpu_parity_small(real_gpu, cases):
    got = _gpu_outputs(real_gpu, cases)
    for name, c in cases.items():
        _assert_parity(c, got[name])


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("name,kind,m", MODELS, ids=[n for n, _, _ in MODELS])
def test_gpu_parity_at_size(real_gpu, name, kind, m):
    """float32 X at 10^6 x 100 against the float64 reference on the same values."""
    c = _case(kind, m, np.float32, n=1_000_000, k=100, scale=0.1, seed=3)
    got = _gpu_outputs(real_gpu, {name: c})[name]
    _assert_parity(c, got, rtol=1e-9)
    again = np.empty_like(got["G"])
    real_gpu.gpu_loss_grad(kind, c["X"], c["T"], c["W"], c["b"], again, np.empty(m))
    assert np.array_equal(again, got["G"]), "repeated evaluations must be bit-identical"


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
