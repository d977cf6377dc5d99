"""Regularisation paths and cross-validation: this project against glum and scikit-learn.

One process, one run, the same data, the same lambda grid and the same folds for everyone.
Per problem it times

- ``pipeline.path`` (the full-data path) and ``pipeline.cv`` (the path on every fold plus the
  refit at the chosen lambda);
- the peers' cross-validated estimators on the same grid (lambdas mapped exactly to their
  scaling: ``shared/spec/objectives.md``) and the same folds;

and checks accuracy in OUR objective: a sample of our path's points against tight single fits
(relative suboptimality), and each peer's refit against a tight fit at the lambda it chose.

    python bench/paths.py                           # 1e5 rows x 100, every problem
    python bench/paths.py --sizes 1e5,1e6 --out bench/results/paths.md
    python bench/paths.py --quick                   # a smoke run (2e4 rows, 20 lambdas)
    python bench/paths.py --only linear-l1,linear-elasticnet --sizes 1e6 --peer-budget 600

Each peer runs in a child process of its own (spawned: a fresh interpreter), warmed by one small
fit before the timed one (imports and first-call costs are not timed, as numba's compile is
not for ours); ``--peer-budget S`` stops a peer's timed fit after S seconds and reports the
ratio as at least S / ours.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import queue
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pipeline  # noqa: E402
from pipeline.objectives import ArrayObjective  # noqa: E402
from pipeline.penalties import Penalty  # noqa: E402
from pipeline.validation import check_targets  # noqa: E402

K = 100
FOLDS = 5
# (model, reg, l1_ratio, peers)
PROBLEMS = [("logistic", "l1", None, ("glum", "liblinear", "saga")),
            ("linear", "l1", None, ("glum", "lasso_cv")),
            ("linear", "elasticnet", 0.5, ("glum", "elastic_net_cv")),
            ("softmax", "l1", None, ("saga",))]


def data(model: str, n: int, seed: int = 0):
    """Standardised Gaussian features, 10 informative ones, noisy targets."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, K))
    m = 10 if model == "softmax" else 1
    W = np.zeros((K, m))
    W[:10] = rng.standard_normal((10, m))
    Z = X @ W + rng.standard_normal((n, m))
    y = {"linear": Z[:, 0], "logistic": (Z[:, 0] > 0).astype(np.int64),
         "softmax": Z.argmax(1)}[model]
    return X, y


def objective_at(model, reg, lam, ratio, X, y, W, b) -> float:
    """F(W, b) in our scaling, evaluated by our kernel."""
    T, classes = check_targets(model, y, X.shape[0])
    obj = ArrayObjective(model, X, T, 0 if classes is None else len(classes))
    return obj.loss(np.ascontiguousarray(W), np.asarray(b, dtype=np.float64)) + Penalty(
        reg, lam, 0.5 if ratio is None else ratio, X.shape[1]).value(W)


def tight(model, reg, lam, ratio, X, y) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline.fit(X, y, model=model, reg=reg, lam=lam, l1_ratio=ratio, tol=1e-11,
                            max_iter=20_000).objective


def en_map(lam: float, r: float, n_scale: float):
    """(alpha, l1_ratio) of the form ``data/n_scale + alpha (l1_ratio |w|_1 + (1 - l1_ratio)/2
    |w|^2)`` equal to ours ``L + lam/k (r |w|_1 + (1 - r) |w|^2)`` up to the factor n_scale
    (1 for log loss, 2 for half squared errors)."""
    a1, a2 = lam * r / K / n_scale, lam * (1 - r) / K / n_scale
    alpha = a1 + 2.0 * a2
    return alpha, a1 / alpha


def run_peer(peer, model, reg, ratio, lams, X, y, splits):
    """Fit the peer's CV estimator; returns (seconds, chosen lam in our scaling, W, b)."""
    n_tr = int(np.mean([len(tr) for tr, _ in splits]))
    r = 1.0 if reg == "l1" else ratio
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if peer == "glum":
            from glum import GeneralizedLinearRegressorCV

            scale = 2.0 if model == "linear" else 1.0
            alpha0, r_g = en_map(1.0, r, scale)
            est = GeneralizedLinearRegressorCV(
                family="normal" if model == "linear" else "binomial", l1_ratio=r_g,
                alphas=lams * alpha0, cv=splits).fit(X, y)
            lam = est.alpha_ / alpha0
            W, b = est.coef_.reshape(-1, 1), np.atleast_1d(est.intercept_)
        elif peer in ("lasso_cv", "elastic_net_cv"):
            from sklearn.linear_model import ElasticNetCV, LassoCV

            alpha0, r_s = en_map(1.0, r, 2.0)
            est = (LassoCV(alphas=lams * alpha0, cv=splits) if peer == "lasso_cv" else
                   ElasticNetCV(l1_ratio=r_s, alphas=lams * alpha0, cv=splits)).fit(X, y)
            lam = est.alpha_ / alpha0
            W, b = est.coef_.reshape(-1, 1), np.atleast_1d(est.intercept_)
        else:  # LogisticRegressionCV with liblinear or saga, C = k / (n lam) for l1
            from sklearn.linear_model import LogisticRegressionCV

            est = LogisticRegressionCV(Cs=K / (n_tr * lams), penalty="l1", solver=peer,
                                       cv=splits, max_iter=1000).fit(X, y)
            lam = K / (X.shape[0] * float(np.atleast_1d(est.C_)[0]))
            W, b = est.coef_.T, est.intercept_
    return time.perf_counter() - t0, lam, W, b


def _peer_child(out, peer, model, reg, ratio, lams, n, val_rows, threads):
    """A spawned child: the same data and folds, one small warm-up fit, then the timed one
    (on ``threads`` BLAS and OpenMP threads; None: the libraries' default)."""
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    X, y = data(model, n)
    splits = [(np.setdiff1d(np.arange(n), v), v) for v in val_rows]
    m = min(n, 2000)
    half = np.arange(m) % 2 == 0
    warm = [(np.flatnonzero(~half), np.flatnonzero(half)), (np.flatnonzero(half),
                                                           np.flatnonzero(~half))]
    run_peer(peer, model, reg, ratio, lams[:3], X[:m], y[:m], warm)
    out.put("ready")
    out.put(run_peer(peer, model, reg, ratio, lams, X, y, splits))


def timed_peer(peer, model, reg, ratio, lams, n, val_rows, budget, threads=None):
    """run_peer's result from a child process, or None when it ran past ``budget`` seconds."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_peer_child,
                        args=(out, peer, model, reg, ratio, lams, n, val_rows, threads))
    child.start()
    try:
        while True:  # the warm-up: untimed, but a child that died must not hang the run
            try:
                assert out.get(timeout=5) == "ready"
                break
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(f"{peer}: its process ended with code "
                                       f"{child.exitcode} before its fit") from None
        return out.get(timeout=budget)
    except queue.Empty:
        return None
    finally:
        child.kill()
        child.join()


def ours(model, reg, ratio, n_lams, X, y, seed=0):
    t0 = time.perf_counter()
    P = pipeline.path(X, y, model=model, reg=reg, l1_ratio=ratio, n_lams=n_lams)
    t_path = time.perf_counter() - t0
    t0 = time.perf_counter()
    C = pipeline.cv(X, y, model=model, reg=reg, l1_ratio=ratio, n_lams=n_lams, folds=FOLDS,
                    seed=seed)
    t_cv = time.perf_counter() - t0
    worst = 0.0
    for i in np.linspace(1, len(P.lams) - 1, 5).astype(int):
        ref = tight(model, reg, P.lams[i], ratio, X, y)
        worst = max(worst, (P.objective[i] - ref) / abs(ref))
    return P, C, t_path, t_cv, worst


def problem_rows(model, reg, ratio, peers, n, n_lams, budget=None, threads=None):
    X, y = data(model, n)
    # warm the kernels and solvers (numba compile is not what we time)
    pipeline.cv(X[:5000], y[:5000], model=model, reg=reg, l1_ratio=ratio, n_lams=3, folds=2)
    P, C, t_path, t_cv, worst = ours(model, reg, ratio, n_lams, X, y)
    rows = [f"| {n:.0e} | {model} {reg} | ours: path | {t_path:.2f} | {P.n_passes.sum():.0f} "
            f"passes | {worst:.1e} (5 points) | |",
            f"| {n:.0e} | {model} {reg} | ours: {FOLDS}-fold CV + refit | {t_cv:.2f} | "
            f"lam_min {C.lam_min:.3g} | | 1.0 |"]
    best, bound = np.inf, ""
    for peer in peers:
        got = timed_peer(peer, model, reg, ratio, C.lams, n, C.folds, budget, threads)
        if got is None:
            if budget < best:  # the fastest so far is a lower bound
                best, bound = budget, ">= "
            rows.append(f"| {n:.0e} | {model} {reg} | {peer} CV | > {budget:.0f} | stopped at "
                        f"the budget | | >= {budget / t_cv:.1f}x |")
            print(rows[-1], flush=True)
            continue
        t, lam, W, b = got
        F = objective_at(model, reg, lam, ratio, X, y, W, b)
        ref = min(tight(model, reg, lam, ratio, X, y), F)
        if t <= best:
            best, bound = t, ""
        rows.append(f"| {n:.0e} | {model} {reg} | {peer} CV | {t:.2f} | lam {lam:.3g} | "
                    f"{(F - ref) / abs(ref):.1e} (its refit) | {t / t_cv:.1f}x |")
        print(rows[-1], flush=True)
    rows.append(f"| {n:.0e} | {model} {reg} | **fastest peer / ours** | | | | "
                f"**{bound}{best / t_cv:.1f}x** |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e5")
    ap.add_argument("--n-lams", type=int, default=100)
    ap.add_argument("--only", default=None, help="e.g. logistic-l1,linear-l1")
    ap.add_argument("--peer-budget", type=float, default=None,
                    help="seconds a peer's timed fit may take (default: no limit)")
    ap.add_argument("--peer-threads", type=int, default=None,
                    help="BLAS/OpenMP threads of the peers (default: their own choice)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sizes = [20_000] if args.quick else [int(float(s)) for s in args.sizes.split(",")]
    n_lams = 20 if args.quick else args.n_lams
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores; {n_lams} lambdas, "
             f"{FOLDS} folds, k={K}; peers' threads: {args.peer_threads or 'default'}; load "
             f"average {os.getloadavg()[0]:.1f} at the start", "",
             "| n | problem | method | seconds | | rel. suboptimality | time / ours (CV) |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for n in sizes:
        for model, reg, ratio, peers in PROBLEMS:
            if args.only and f"{model}-{reg}" not in args.only.split(","):
                continue
            rows = problem_rows(model, reg, ratio, peers, n, n_lams, args.peer_budget,
                                args.peer_threads)
            print("\n".join(rows[:2] + rows[-1:]), flush=True)
            lines += rows
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
