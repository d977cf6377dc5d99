"""What sample weights cost: weighted against unweighted, one process, the same data.

Per problem (dense synthetic, n rows x 100 features) it times

- one pass (``Objective.loss_grad``, the fused kernel) with and without weights: the weights
  are one more column of the encoded targets, read in the same pass;
- ``pipeline.fit`` with the solver ``auto`` picks, to ``tol=1e-7``, with random weights
  (uniform on [0, 2]) and without (a different problem, so its iteration count differs: the
  table shows both and the time per pass-equivalent).

    python bench/weights.py                        # 1e6 rows
    python bench/weights.py --rows 2e5 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pipeline  # noqa: E402
from pipeline.objectives import ArrayObjective  # noqa: E402
from pipeline.validation import check_targets  # noqa: E402

K = 100
PROBLEMS = [("linear", "l2", 1), ("logistic", "l2", 2), ("logistic", "l1", 2),
            ("softmax", "l2", 10), ("softmax", "l1", 10)]


def make(model: str, n: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, K))
    W = rng.standard_normal((K, max(classes, 1))) / np.sqrt(K)
    Z = X @ W + rng.standard_normal((n, W.shape[1]))
    y = Z[:, 0] if model == "linear" else Z.argmax(1) if classes > 2 else (Z[:, 0] > 0)
    return X, y.astype(np.float64 if model == "linear" else np.int64)


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def pass_time(model, X, y, s, repeat: int) -> float:
    T, classes = check_targets(model, y, X.shape[0])
    obj = ArrayObjective(model, X, T, 0 if classes is None else len(classes), sample_weight=s)
    W, b = obj.zeros()
    G, gb = np.empty_like(W), np.empty_like(b)
    obj.loss_grad(W, b, G, gb)  # compile / warm
    return best_of(repeat, lambda: obj.loss_grad(W, b, G, gb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=float, default=1e6)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = int(args.rows)
    print(f"# weighted vs unweighted, {n} x {K}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; best of {args.repeat}\n")
    print("| model | reg | solver | pass (ms) none / weighted | ratio | fit (s) none / weighted "
          "| passes none / weighted | fit ratio | per-pass fit ratio |")
    print("|---" * 9 + "|")
    s = np.random.default_rng(1).uniform(0.0, 2.0, n)
    for model, reg, classes in PROBLEMS:
        X, y = make(model, n, classes)
        p0, p1 = pass_time(model, X, y, None, args.repeat), pass_time(model, X, y, s, args.repeat)
        kw = dict(model=model, reg=reg, lam=1e-2, tol=1e-7)
        pipeline.fit(X[:5000], y[:5000], **kw)  # compile the solver's kernels
        runs = {}
        for name, w in (("none", None), ("weighted", s)):
            t0 = time.perf_counter()
            res = pipeline.fit(X, y, sample_weight=w, **kw)
            runs[name] = (time.perf_counter() - t0, res)
        (t_none, r_none), (t_w, r_w) = runs["none"], runs["weighted"]
        per = (t_w / max(r_w.n_passes, 1)) / (t_none / max(r_none.n_passes, 1))
        print(f"| {model} | {reg} | {r_w.solver} | {1e3 * p0:.1f} / {1e3 * p1:.1f} | "
              f"{p1 / p0:.2f} | {t_none:.2f} / {t_w:.2f} | {r_none.n_passes} / {r_w.n_passes} "
              f"| {t_w / t_none:.2f} | {per:.2f} |", flush=True)


if __name__ == "__main__":
    main()
