"""Sparse, text-like data: time to 1e-6 relative suboptimality, ours against scikit-learn.

A synthetic bag-of-words problem: ``n`` rows, ``k`` columns, about ``nnz`` stored words per row
drawn from a power-law (Zipf, exponent 1.1) column frequency, tf-idf weights, rows scaled to
unit norm; labels from a planted model (binary logistic, and ``classes``-class softmax). For
logistic and softmax with L2 and L1 at scikit-learn's default strength (C = 1, mapped exactly
to our lam: ``lam = k / (2 n C)`` for L2, ``k / (n C)`` for L1), it

1. fits a reference ``F*`` (ours at a tight tolerance; any better objective seen on the way
   replaces it), every objective evaluated in OUR scaling by the sparse kernels;
2. times each method on one ladder of tolerances (1e-2 to 1e-8, half a decade a rung), loose
   to tight, and keeps the first rung within ``1e-6 |F*|`` of ``F*``: ours with
   ``solver="auto"`` on the CSR matrix, and every applicable scikit-learn solver (liblinear,
   saga, lbfgs) on the same CSR matrix; the fastest
   that reaches the target is reported;
3. prints the times and the ratio sklearn / ours.

numba compile time is excluded (every kernel runs once on small data first).

    python bench/sparse.py                 # 1e6 x 1e5, ~50 words a row, 20 classes (long)
    python bench/sparse.py --quick         # a smoke run (2e4 x 2e3)
    python bench/sparse.py --n 200000 --k 20000 --budget 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pipeline  # noqa: E402
from pipeline.objectives_sparse import SparseObjective  # noqa: E402
from pipeline.penalties import Penalty  # noqa: E402
from pipeline.validation import check_targets  # noqa: E402

TARGET = 1e-6
# One ladder for both sides, half a decade a rung: each method's tolerance is then picked in
# hindsight the same way (ours is the gradient's max-norm, scikit-learn's its own criterion).
TOLS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8)
SK_SOLVERS = {("logistic", "l2"): ("liblinear", "lbfgs", "saga"),
              ("logistic", "l1"): ("liblinear", "saga"),
              ("softmax", "l2"): ("lbfgs", "saga"),  # liblinear is one-vs-rest only
              ("softmax", "l1"): ("saga",)}


def make_text(n: int, k: int, nnz: int, classes: int, seed: int = 0):
    """CSR X (n, k) of tf-idf rows of unit norm, binary and multiclass labels."""
    rng = np.random.default_rng(seed)
    counts = np.maximum(rng.poisson(nnz, n), 1)
    freq = 1.0 / np.arange(1, k + 1) ** 1.1
    cdf = np.cumsum(freq) / freq.sum()
    cols = np.minimum(np.searchsorted(cdf, rng.random(int(counts.sum()))), k - 1)
    cols = rng.permutation(k)[cols]  # frequent words anywhere, not only in the first columns
    rows = np.repeat(np.arange(n), counts)
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, k))
    X.sum_duplicates()
    df = np.bincount(X.indices, minlength=k)
    X.data = np.log1p(X.data) * np.log((1.0 + n) / (1.0 + df[X.indices]))
    norms = np.sqrt(np.add.reduceat(X.data ** 2, X.indptr[:-1]))
    X.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(X.indptr))
    w = rng.standard_normal(k) * 4.0
    z = X @ w
    y_bin = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    Z = X @ (rng.standard_normal((k, classes)) * 4.0) + rng.gumbel(size=(n, classes))
    return X, y_bin, Z.argmax(axis=1)


def lam_of(reg: str, n: int, k: int, C: float = 1.0) -> float:
    """Our lam for scikit-learn's C (F = mean loss + lam / k * R, sklearn C sum loss + R')."""
    return k / (2 * n * C) if reg == "l2" else k / (n * C)


class Scorer:
    """F(W, b) in our scaling, by the sparse kernels."""

    def __init__(self, X, y, model, reg, lam):
        T, classes = check_targets(model, y, X.shape[0])
        self.obj = SparseObjective(model, X, T, 0 if classes is None else len(classes))
        self.pen = Penalty(reg, lam, 0.5, X.shape[1])

    def __call__(self, W, b) -> float:
        W = np.ascontiguousarray(W, dtype=np.float64)
        return self.obj.loss(W, np.asarray(b, dtype=np.float64)) + self.pen.value(W)


def run_ours(X, y, model, reg, lam, tol):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = pipeline.fit(X, y, model=model, reg=reg, lam=lam, tol=tol, max_iter=100_000)
        dt = time.perf_counter() - t0
    return dt, res.objective, f"{res.solver}, {res.n_passes} passes"


def run_sklearn(X, y, model, reg, solver, tol, score):
    from sklearn.linear_model import LogisticRegression

    extra = {"intercept_scaling": 1e4} if solver == "liblinear" else {}  # ~unpenalised bias
    est = LogisticRegression(C=1.0, l1_ratio=0.0 if reg == "l2" else 1.0, solver=solver,
                             tol=tol, max_iter=100_000, random_state=0, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est.fit(X, y)
        dt = time.perf_counter() - t0
    W, b = np.atleast_2d(est.coef_).T, np.atleast_1d(est.intercept_)
    n_iter = int(np.max(np.atleast_1d(est.n_iter_)))
    return dt, score(W, b), f"{solver}, {n_iter} it"


def ladder(run, tols, F_star, budget_s, log, who):
    """The first rung within TARGET of F* (time, F, what) or None; stops past ``budget_s``."""
    spent = 0.0
    for tol in tols:
        dt, F, what = run(tol)
        spent += dt
        gap = (F - F_star[0]) / abs(F_star[0])
        F_star[0] = min(F_star[0], F)
        log(f"    {who:7s} tol={tol:.0e} {dt:9.2f} s  subopt={gap:9.1e}  {what}")
        if gap <= TARGET:
            return dt, F, what
        if spent > budget_s:
            log(f"    {who:7s} budget of {budget_s:.0f} s spent without reaching {TARGET:.0e}")
            return None
    return None


def bench_case(X, y, model, reg, budget_s, log):
    n, k = X.shape
    lam = lam_of(reg, n, k)
    score = Scorer(X, y, model, reg, lam)
    t_ref, F_ref, what = run_ours(X, y, model, reg, lam, 1e-10)
    F_star = [F_ref]
    log(f"  {model} {reg} (C=1, lam={lam:.3g}): reference F*={F_ref:.12g} ({what}, {t_ref:.1f} s)")
    sk_best = None
    for solver in SK_SOLVERS[(model, reg)]:
        hit = ladder(lambda tol, s=solver: run_sklearn(X, y, model, reg, s, tol, score),
                     TOLS, F_star, budget_s, log, "sklearn")
        if hit is not None and (sk_best is None or hit[0] < sk_best[0]):
            sk_best = hit
    ours = ladder(lambda tol: run_ours(X, y, model, reg, lam, tol), TOLS, F_star,
                  budget_s, log, "ours")
    return ours, sk_best


def warmup():
    X, y, yc = make_text(300, 50, 5, 3, seed=1)
    for model, target in (("logistic", y), ("softmax", yc)):
        for reg in ("l2", "l1"):
            run_ours(X, target, model, reg, 0.01, 1e-6)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--k", type=float, default=1e5)
    ap.add_argument("--nnz", type=int, default=50, help="stored words per row (mean)")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--budget", type=float, default=1800.0,
                    help="seconds per method and case before giving up on the target")
    ap.add_argument("--quick", action="store_true", help="2e4 x 2e3, a smoke run")
    ap.add_argument("--cases", default="logistic:l2,logistic:l1,softmax:l2,softmax:l1")
    args = ap.parse_args(argv)
    n, k = (20_000, 2_000) if args.quick else (int(args.n), int(args.k))

    def log(msg):
        print(msg, flush=True)

    warmup()
    t0 = time.perf_counter()
    X, y_bin, y_cls = make_text(n, k, args.nnz, args.classes)
    log(f"data: {n} x {k}, {X.nnz} stored ({X.nnz / n:.1f} a row), {args.classes} classes, "
        f"made in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs")
    rows = []
    for case in args.cases.split(","):
        model, reg = case.split(":")
        ours, sk = bench_case(X, y_bin if model == "logistic" else y_cls, model, reg,
                              args.budget, log)
        rows.append((model, reg, ours, sk))
    log("\n| model | reg | ours (s) | solver | sklearn best (s) | solver | sklearn / ours |")
    log("|---|---|---|---|---|---|---|")
    for model, reg, ours, sk in rows:
        o = f"{ours[0]:.2f} | {ours[2]}" if ours else "- | not reached"
        s = f"{sk[0]:.2f} | {sk[2]}" if sk else "- | not reached in budget"
        ratio = f"{sk[0] / ours[0]:.1f}x" if ours and sk else "-"
        log(f"| {model} | {reg} | {o} | {s} | {ratio} |")


if __name__ == "__main__":
    main()
