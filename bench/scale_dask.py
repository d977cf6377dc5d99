"""The Dask half of bench/scale.py (issue 11): our solvers on a LocalCluster against dask-ml.

One 2-worker LocalCluster (127.0.0.1, one thread per worker); the data are generated on the
workers chunk by chunk (2e6 x 50 in 32 chunks, ``SyntheticChunk``) and persisted once per task;
every solver, ours and dask-ml's, reads those same resident chunks. For each task (binary
logistic with l2, with elastic net; softmax with 10 classes and l2) it prints the time to
relative suboptimality 1e-6, ``(F - F*) / |F*|`` of OUR objective (``spec/objectives.md``),
against dask-ml's ``LogisticRegression(solver="lbfgs")`` and its default ``admm``, with the
lambdas mapped exactly: ours ``(1/n) sum loss + (lam/k)(r |W|_1 + (1-r) ||W||^2)``, dask-ml's
``sum loss + (1/C)(w |beta|_1 + (1-w) ||beta||^2 / 2)`` (beta with the intercept, which it
penalises), so ``1/C = (n lam / k)(r + 2 (1 - r))`` and ``w = r / (2 - r)``. dask-ml's points
are scored with our F; F* is the best F any run reached (a tight-tolerance run of ours included).
Then the cost of one distributed pass against the in-process pass (one thread) divided by the
workers, and the in-process ArrayObjective with the same chunking as a bit-for-bit check.

    python bench/scale_dask.py              # ~10 min on 2 cores (admm capped, see --help)
    python bench/scale.py --part dask       # the same, from the common entry point
"""

from __future__ import annotations

import argparse
import logging
import operator
import sys
import time
import warnings

import numpy as np

TARGET = 1e-6


def _cluster(n_workers: int):
    from distributed import Client, LocalCluster

    from pipeline.dask_backend import worker_env
    from pipeline.objectives_dask import KernelWarmup

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           worker_dashboard_address=None, silence_logs=logging.ERROR,
                           env=worker_env(n_workers))
    client = Client(cluster)
    client.register_plugin(KernelWarmup("float64"))
    return cluster, client


def _loaders(n: int, k: int, n_chunks: int, n_classes: int, seed: int = 0) -> list:
    from pipeline.objectives_dask import SyntheticChunk

    rows = n // n_chunks
    return [SyntheticChunk(rows, k, n_classes, seed, i) for i in range(n_chunks)]


def _solve(obj, reg, lam, l1_ratio, solver, tol, max_iter=300, **options):
    """Our solver on ``obj``; returns (result, [(seconds, F) per step])."""
    from pipeline.objectives import PassCounter
    from pipeline.penalties import Penalty
    from pipeline.solvers import SOLVERS, Problem

    obj.counter = PassCounter(obj.n_samples)
    trace: list[tuple[float, float]] = []
    t0 = time.perf_counter()

    def step(_it, F, *_):
        trace.append((time.perf_counter() - t0, F))

    problem = Problem(obj, Penalty(reg, lam, l1_ratio, obj.n_features), tol, max_iter, step)
    W, b = obj.zeros()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = SOLVERS[solver].fn(problem, W, b, **options)
    trace.append((time.perf_counter() - t0, res.objective))
    return res, trace


def _time_to(trace, F_star: float) -> tuple[float | None, float]:
    """(seconds until F <= F* (1 + 1e-6) or None, best relative suboptimality)."""
    best = min(F for _, F in trace)
    for t, F in trace:
        if (F - F_star) / abs(F_star) <= TARGET:
            return t, (best - F_star) / abs(F_star)
    return None, (best - F_star) / abs(F_star)


def _our_F(obj, reg, lam, l1_ratio, W, b) -> float:
    from pipeline.penalties import Penalty

    pen = Penalty(reg, lam, l1_ratio, obj.n_features)
    W = np.asarray(W, dtype=np.float64).reshape(obj.n_features, -1)
    f = obj.loss(W, np.atleast_1d(np.asarray(b, dtype=np.float64)))
    return f + pen.smooth_value(W) + pen.a1 * float(np.abs(W).sum())


def _dask_ml(client, obj, reg, lam, l1_ratio, solver, max_iter):
    """dask-ml's LogisticRegression on the same resident chunks; (trace, final point).

    For lbfgs the trace is every L-BFGS iterate (a callback handed to scipy's
    fmin_l_bfgs_b, which dask-glm calls), scored afterwards with our F; admm gives its final
    point only (time to it is an upper bound of its time to any target it reached).
    """
    import dask.array as da
    from dask_glm import algorithms
    from dask_glm.regularizers import ElasticNet
    from dask_ml.linear_model import LogisticRegression

    n, k = obj.n_samples, obj.n_features
    parts_X = client.map(operator.getitem, obj.chunks, [0] * len(obj.chunks), pure=False)
    parts_y = client.map(_label_column, obj.chunks, pure=False)
    X = da.concatenate([da.from_delayed(f, (r, k), np.float64)
                        for f, r in zip(parts_X, obj.chunk_rows, strict=True)])
    y = da.concatenate([da.from_delayed(f, (r,), np.float64)
                        for f, r in zip(parts_y, obj.chunk_rows, strict=True)])
    r = l1_ratio if reg == "elasticnet" else 0.0
    inv_C = n * lam / k * (r + 2.0 * (1.0 - r))
    penalty = ElasticNet(weight=r / (2.0 - r)) if reg == "elasticnet" else "l2"
    est = LogisticRegression(solver=solver, C=1.0 / inv_C, max_iter=max_iter,
                             solver_kwargs={"regularizer": penalty})
    betas: list[tuple[float, np.ndarray]] = []
    original = algorithms.fmin_l_bfgs_b
    t0 = time.perf_counter()

    def traced(*args, **kw):
        kw["callback"] = lambda beta: betas.append((time.perf_counter() - t0, beta.copy()))
        return original(*args, **kw)

    algorithms.fmin_l_bfgs_b = traced if solver == "lbfgs" else original
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    finally:
        algorithms.fmin_l_bfgs_b = original
    total = time.perf_counter() - t0
    points = [(t, beta[:-1], beta[-1]) for t, beta in betas]
    points.append((total, np.asarray(est.coef_), float(est.intercept_)))
    trace = [(t, _our_F(obj, reg, lam, l1_ratio, w, b0)) for t, w, b0 in points]
    return trace, np.asarray(est.coef_)


def _label_column(chunk) -> np.ndarray:
    return np.ascontiguousarray(chunk[1][:, 0])


TASKS = [  # (name, model, classes, reg, lam, l1_ratio, our solvers, dask-ml?)
    ("binary l2", "logistic", 2, "l2", 1e-3, 0.5, ("prox_newton", "newton", "lbfgs"), True),
    ("binary elastic net", "logistic", 2, "elasticnet", 1e-3, 0.5,
     ("prox_newton", "split_lbfgs"), True),
    ("softmax 10 classes l2", "softmax", 10, "l2", 1e-3, 0.5, ("newton", "lbfgs"), False),
]


def _task(client, args, name, model, n_classes, reg, lam, r, ours, with_dask_ml) -> list:
    from pipeline.objectives_dask import DaskObjective

    kind = "logistic" if n_classes == 2 else model
    t0 = time.perf_counter()
    obj = DaskObjective(client, _loaders(args.n, args.k, args.chunks, n_classes), kind,
                        n_classes)
    print(f"\n{name}: {obj.n_samples} x {obj.n_features}, {len(obj.chunks)} chunks "
          f"generated on the workers in {time.perf_counter() - t0:.1f} s", flush=True)
    runs = {}
    for solver in ours:
        res, trace = _solve(obj, reg, lam, r, solver, args.tol)
        runs[f"ours {solver}"] = (trace, res.n_passes, int(np.count_nonzero(res.W)))
    ref, _ = _solve(obj, reg, lam, r, ours[0], 1e-11)  # the tight reference
    if with_dask_ml:
        for solver in ("lbfgs", "admm"):
            try:
                its = args.dask_ml_max_iter if solver == "lbfgs" else args.admm_max_iter
                trace, coef = _dask_ml(client, obj, reg, lam, r, solver, its)
                runs[f"dask-ml {solver}"] = (trace, None, int(np.count_nonzero(coef)))
            except Exception as err:  # report what the opponent does, do not stop
                print(f"  dask-ml {solver}: failed: {type(err).__name__}: {err}"[:300])
    F_star = min([ref.objective] + [F for tr, _, _ in runs.values() for _, F in tr])
    rows = []
    for label, (trace, passes, nnz) in runs.items():
        t, best = _time_to(trace, F_star)
        rows.append((name, label, t, best, trace[-1][0], passes, nnz))
    obj.release()
    return rows


def _pass_cost(client, args) -> None:
    """One distributed pass against the in-process one (same chunks, same bits)."""
    import numba

    from pipeline.objectives import ArrayObjective
    from pipeline.objectives_dask import DaskObjective

    loaders = _loaders(args.n, args.k, args.chunks, 2)
    obj = DaskObjective(client, loaders, "logistic", 2)
    parts = [ld() for ld in loaders]
    X = np.concatenate([p[0] for p in parts])
    T = np.concatenate([p[1] for p in parts])
    del parts
    local = ArrayObjective("logistic", X, T, 2, chunk_rows=args.n // args.chunks)
    W, b = np.full((args.k, 1), 0.01), np.zeros(1)
    G, gb, G2, gb2 = *obj.zeros(), *obj.zeros()

    def best(fn, reps=7):
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return float(np.median(out))

    dist = best(lambda: obj.loss_grad(W, b, G, gb))
    empty = best(lambda: obj.map_chunks(operator.is_))  # the same tasks, no work: overhead
    task_wall, task_cpu = _in_tasks(client, obj, W, b)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    one = best(lambda: local.loss_grad(W, b, G2, gb2))
    numba.set_num_threads(threads)
    full = best(lambda: local.loss_grad(W, b, G2, gb2))
    same = np.array_equal(G, G2) and np.array_equal(gb, gb2)
    w = len(client.scheduler_info(n_workers=-1)["workers"])
    target = 0.015 + one / w
    print(f"\none pass over {args.n} x {args.k} ({args.chunks} chunks, {w} workers): "
          f"distributed {dist * 1e3:.1f} ms; in process {one * 1e3:.1f} ms on 1 thread, "
          f"{full * 1e3:.1f} ms on {threads}; target 15 ms + {one * 1e3:.1f} / {w} = "
          f"{target * 1e3:.1f} ms: {'met' if dist <= target else 'MISSED'} "
          f"(ratio {dist / target:.2f}); an evaluation doing no work {empty * 1e3:.1f} ms; "
          f"inside the slowest worker's task {task_wall * 1e3:.1f} ms of which "
          f"{task_cpu * 1e3:.1f} ms on a core (the rest waits for one; CPU + 15 ms against the "
          f"target: {'met' if task_cpu + 0.015 <= target else 'missed'}); "
          f"same bits as ArrayObjective(chunk_rows={args.n // args.chunks}): {same}",
          flush=True)
    obj.release()


def _timed_chunks(chunks, op, args) -> tuple[float, float]:
    """On a worker: ``run_chunks`` of one evaluation, and its (wall, CPU) seconds there."""
    from pipeline.objectives_dask import run_chunks

    t, cpu = time.perf_counter(), time.thread_time()
    run_chunks(chunks, op, args)
    return time.perf_counter() - t, time.thread_time() - cpu


def _in_tasks(client, obj, W, b, reps: int = 7) -> tuple[float, float]:
    """Median over ``reps`` evaluations of the slowest worker's (wall, CPU) seconds inside its
    task: CPU is the kernels' own work, wall minus CPU the wait for a core."""
    import cloudpickle

    from pipeline import chunk_ops

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # bench/ is not on the workers
    walls, cpus = [], []
    for _ in range(reps):
        futures = [client.submit(_timed_chunks, [obj.chunks[i] for i in g], chunk_ops.loss_grad,
                                 (obj.kind, W, b, False), pure=False) for g in obj._groups]
        times = client.gather(futures)
        walls.append(max(w for w, _ in times))
        cpus.append(max(c for _, c in times))
    return float(np.median(walls)), float(np.median(cpus))


def _print(rows: list) -> None:
    print(f"\n{'task':<22} {'solver':<20} {'to 1e-6 (s)':>11} {'best subopt':>11} "
          f"{'total (s)':>9} {'passes':>6} {'nonzero':>7} {'ratio':>7}")
    for task in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == task]
        ours = [r[2] for r in mine if r[1].startswith("ours") and r[2] is not None]
        fastest = min(ours) if ours else None
        for _, label, t, best, total, passes, nnz in mine:
            ratio = "" if t is None or fastest is None else f"{t / fastest:.1f}x"
            print(f"{task:<22} {label:<20} {'never' if t is None else f'{t:.2f}':>11} "
                  f"{best:>11.1e} {total:>9.2f} {passes if passes is not None else '-':>6} "
                  f"{nnz:>7} {ratio:>7}")
    print("ratio: time to 1e-6 over our fastest's; dask-ml admm gives no trace (its total "
          "time bounds its time to any target it reached); dask-ml is binary only")


def run(args) -> None:
    """The Dask part: the pass cost, then the three tasks, one table."""
    from pipeline.objectives_dask import warm_kernels

    warm_kernels()  # the driver's kernels too (row samples, Hessian samples): not timed
    cluster, client = _cluster(args.workers)
    try:
        _pass_cost(client, args)
        rows = []
        for task in TASKS:
            if args.only and args.only not in task[0]:
                continue
            rows += _task(client, args, *task)
        _print(rows)
    finally:
        client.close()
        cluster.close()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--n", type=int, default=2_000_000, help="dask: rows")
    ap.add_argument("--k", type=int, default=50, help="dask: features")
    ap.add_argument("--chunks", type=int, default=32, help="dask: chunks")
    ap.add_argument("--workers", type=int, default=2, help="dask: LocalCluster workers")
    ap.add_argument("--tol", type=float, default=1e-8, help="dask: our solvers' tolerance")
    ap.add_argument("--dask-ml-max-iter", type=int, default=100,
                    help="dask: dask-ml lbfgs's max_iter (its default)")
    ap.add_argument("--admm-max-iter", type=int, default=5,
                    help="dask: dask-ml admm's max_iter (its default 100 takes ~30 s an "
                         "iteration at 2e6 x 50 on 2 cores: capped for time)")
    ap.add_argument("--only", default="", help="dask: run only the tasks whose name has this")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())
