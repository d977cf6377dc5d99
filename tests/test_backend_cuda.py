"""backend="cuda": the solvers run unchanged on device-resident data (numba CUDA simulator in
CI, a real GPU where there is one), and a clear error where CUDA is missing."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pipeline

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import numpy as np, pipeline
rng = np.random.default_rng(0)
X = rng.standard_normal((120, 4))
y = (X @ rng.standard_normal(4) + rng.standard_normal(120) > 0).astype(int)
cases = [("logistic", y, "l2", "lbfgs"), ("linear", X[:, 0] - X[:, 1], "l2", "auto")]
for model, target, reg, solver in cases:
    gpu = pipeline.fit(X, target, model=model, reg=reg, lam=0.1, solver=solver, backend="cuda",
                       tol=1e-8)
    cpu = pipeline.fit(X, target, model=model, reg=reg, lam=0.1, solver=solver, tol=1e-8)
    print(model, gpu.solver, abs(gpu.objective - cpu.objective) / cpu.objective,
          float(np.abs(gpu.W - cpu.W).max()), gpu.n_passes)
"""


def test_cuda_backend_matches_cpu_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.strip().splitlines()]
    assert [r[:2] for r in rows] == [["logistic", "lbfgs"], ["linear", "lbfgs"]]
    for _, _, rel_F, max_dW, passes in rows:
        assert float(rel_F) <= 1e-9 and float(max_dW) <= 1e-6 and int(passes) > 1


def test_cuda_backend_without_a_gpu_names_the_fix():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the simulator stands in for a GPU here")
    try:
        import kernels.gpu  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ValueError, match=r"cuda.*pip install -e '\.\[cuda\]'.*backend=cpu"):
        pipeline.fit(np.ones((3, 2)), [0, 1, 0], model="logistic", backend="cuda")


def test_gram_solvers_are_cpu_only():
    with pytest.raises(ValueError,
                       match="runs on backend=cpu (or dask )?only.*use one of: auto, gd"):
        pipeline.fit(np.ones((3, 2)), [0.0, 1.0, 2.0], model="linear", solver="cd",
                     backend="cuda")


OVR_SGD = """
import numpy as np, pipeline
rng = np.random.default_rng(1)
X = rng.standard_normal((90, 3))
y = np.argmax(X @ rng.standard_normal((3, 3)) + 0.3 * rng.standard_normal((90, 3)), axis=1)
kw = dict(model="ovr", reg="l2", lam=0.1, solver="sgd", max_iter=5, batch_size=16, seed=3)
gpu = pipeline.fit(X, y, backend="cuda", **kw)
cpu = pipeline.fit(X, y, **kw)
print(abs(gpu.objective - cpu.objective) / cpu.objective, float(np.abs(gpu.W - cpu.W).max()))
"""


def test_cuda_sgd_mini_batches_keep_one_vs_rest_labels():
    # Mini-batches are sub-objectives: one-hot targets encoded a second time trained on wrong
    # labels (the objective of the GPU fit then differed from the CPU one in the first digit).
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", OVR_SGD], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rel_F, max_dW = map(float, out.stdout.split())
    assert rel_F <= 1e-9 and max_dW <= 1e-7
