"""Same data and seed: bit-identical W and b for 1 and 2 threads and across runs."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import hashlib, numpy as np, pipeline
rng = np.random.default_rng(7)
X = rng.standard_normal((20000, 30))
w = rng.standard_normal((30, 4))
y = (X @ w + rng.standard_normal((20000, 4))).argmax(axis=1)
h = hashlib.sha256()
for model, reg, solver in [("softmax", "l2", "lbfgs"), ("softmax", "l1", "agd"),
                           ("softmax", "l1", "split_lbfgs"),
                           ("logistic", "l2", "newton"), ("linear", "l1", "cd"),
                           ("logistic", "elasticnet", "sgd")]:
    target = (y == 0).astype(int) if model == "logistic" else (
        X @ w[:, 0] if model == "linear" else y)
    r = pipeline.fit(X, target, model=model, reg=reg, lam=0.01, solver=solver, max_iter=50)
    h.update(r.W.tobytes()); h.update(r.b.tobytes())
print(h.hexdigest())
"""


def run(threads: int) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_bit_identical_for_1_and_2_threads_and_across_runs():
    one, two, again = run(1), run(2), run(2)
    assert len(one) == len(hashlib.sha256().hexdigest())
    assert one == two == again
