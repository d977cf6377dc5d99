"""backend="dask": a real LocalCluster (worker processes on 127.0.0.1), small data.

One 2-worker cluster serves the module; fits join it by address. The fit on the cluster must
give the bits of the in-process objective with the same chunking, whatever the number of
workers, survive a worker killed mid-fit with the same bits, and fail within seconds at an
address where no scheduler answers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections import Counter

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from pipeline import api, dask_backend, fit  # noqa: E402
from pipeline.objectives import ArrayObjective  # noqa: E402
from pipeline.validation import check_targets  # noqa: E402

from .conftest import runs_of  # noqa: E402

CHUNK = 500  # rows per chunk: 6 chunks of 2700 rows, the last one short
FEW = 40  # iterations enough for the same bits to be a strong check (first-order ones stop)
SOLVER_CASES = [  # (model, reg, solver, options): every solver the registry allows on dask
    ("logistic", "l2", "lbfgs", {}),
    ("softmax", "l2", "lbfgs", {}),
    ("logistic", "l1", "split_lbfgs", {}),
    ("softmax", "l2", "newton", {"hessian_sample": 900}),
    ("logistic", "elasticnet", "prox_newton", {"sample": 900}),
    ("logistic", "l1", "agd", {}),
    ("ovr", "l2", "gd", {}),
    ("linear", "l2", "closed_form", {}),
    ("linear", "l1", "cd", {}),
]


class LoadCounter(distributed.diagnostics.plugin.SchedulerPlugin):
    """How many times each chunk was loaded (its task reached memory), seen by the scheduler."""

    def __init__(self) -> None:
        self.loads: Counter = Counter()

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "memory" and str(key).startswith("load_chunk"):
            self.loads[key] += 1


@pytest.fixture(scope="module")
def cluster():
    """The module's cluster: 2 worker processes, one thread each, loopback only."""
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address=None,
                                 worker_dashboard_address=None, silence_logs=logging.ERROR,
                                 env=dask_backend.worker_env(2))
    try:
        yield c
    finally:  # after a scale and a kill, distributed's close may trip on its own worker table
        with contextlib.suppress(Exception):
            c.close(timeout=30)


@pytest.fixture(scope="module")
def client(cluster):
    """The test's own client of the module's cluster (to look at and kill its workers)."""
    with distributed.Client(cluster) as c:
        yield c


def _data(model: str, n: int = 2700, k: int = 5):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, k)) * rng.uniform(0.5, 2.0, k) + rng.normal(0, 1, k)
    Z = X @ rng.standard_normal((k, 3)) + 1.5 * rng.standard_normal((n, 3))
    y = {"linear": Z[:, 0], "logistic": Z[:, 0] > 0, "softmax": Z.argmax(1),
         "ovr": Z.argmax(1)}[model]
    return np.ascontiguousarray(X), y


def _dask_fit(cluster, model, reg, solver, options, callback=None, max_iter=500, **backend):
    X, y = _data(model)
    return fit(X, y, model=model, reg=reg, lam=0.05, solver=solver, tol=1e-8, max_iter=max_iter,
               backend="dask", callback=callback,
               backend_options={"address": cluster.scheduler_address, "chunk_rows": CHUNK,
                                **backend}, **options)


def _in_process(model, reg, solver, options, chunk_rows, max_iter=500):
    """The same fit through the same core, on ArrayObjective(chunk_rows=...)."""
    X, y = _data(model)
    T, classes = check_targets(model, y, X.shape[0])
    n_classes = 0 if classes is None else len(classes)
    obj = ArrayObjective(model, X, T, n_classes, chunk_rows=chunk_rows)
    return api._solve(obj, X, T, n_classes, reg, 0.05, 0.5, solver, 1e-8, max_iter, 0, "cpu",
                      None, options)


@pytest.mark.filterwarnings("ignore::pipeline.ConvergenceWarning")  # FEW steps on purpose
@pytest.mark.parametrize("model, reg, solver, options", SOLVER_CASES,
                         ids=[f"{c[2]}-{c[0]}-{c[1]}" for c in SOLVER_CASES])
def test_cluster_fit_has_the_bits_of_the_same_chunking_in_process(cluster, model, reg, solver,
                                                                 options):
    got = _dask_fit(cluster, model, reg, solver, options, max_iter=FEW)
    want = _in_process(model, reg, solver, options, CHUNK, max_iter=FEW)
    assert got.n_iter == want.n_iter >= 1 and got.n_passes == want.n_passes
    np.testing.assert_array_equal(got.W, want.W)
    np.testing.assert_array_equal(got.b, want.b)
    assert got.backend_facts["backend.n_chunks"] == 6
    assert got.backend_facts["backend.workers"] == 2


@pytest.mark.parametrize("model", ["logistic", "ovr"])
def test_a_chunked_source_is_read_by_the_workers_with_the_streamed_fits_bits(cluster, tmp_path,
                                                                            model):
    from pipeline.chunked import open_source

    X, y = _data(model)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    source = open_source(tmp_path / "X.npy", tmp_path / "y.npy", chunk_rows=CHUNK)
    kw = dict(model=model, reg="l2", lam=0.05, solver="lbfgs", tol=1e-8, max_iter=500)
    got = fit(source, None, backend="dask", **kw,
              backend_options={"address": cluster.scheduler_address})
    want = fit(source, None, **kw)
    np.testing.assert_array_equal(got.W, want.W)
    np.testing.assert_array_equal(got.b, want.b)
    np.testing.assert_array_equal(got.classes, want.classes)
    assert got.backend_facts["backend.n_chunks"] == len(source.bounds) == 6


def test_large_arguments_scattered_to_the_workers_give_the_same_bits(cluster, monkeypatch):
    from pipeline import objectives_dask

    want = _dask_fit(cluster, "softmax", "l2", "newton", {}, max_iter=FEW)
    monkeypatch.setattr(objectives_dask, "SCATTER_BYTES", 0)  # every W, b, V, vb scattered
    got = _dask_fit(cluster, "softmax", "l2", "newton", {}, max_iter=FEW)
    np.testing.assert_array_equal(got.W, want.W)
    np.testing.assert_array_equal(got.b, want.b)


@pytest.mark.parametrize("model, reg", [("logistic", "l2"), ("softmax", "l2")])
def test_cluster_fit_reaches_the_in_memory_optimum(cluster, model, reg):
    got = _dask_fit(cluster, model, reg, "auto", {})
    X, y = _data(model)
    want = fit(X, y, model=model, reg=reg, lam=0.05, tol=1e-8, max_iter=500)
    assert got.converged and want.converged
    np.testing.assert_allclose(got.W, want.W, atol=1e-6)
    assert got.objective == pytest.approx(want.objective, rel=1e-12)


def test_kernel_threads_follow_the_workers_environment(monkeypatch, client):
    """A task's numba threads are the worker's NUMBA_NUM_THREADS, set in the task's thread
    (numba may have been imported before the nanny set that variable; its count is per
    thread)."""
    import threading

    import numba

    from pipeline.objectives_dask import kernel_threads

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba runs one thread here: nothing to pin")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    seen = []

    def task():  # a fresh thread starts at numba's default count (all the cores here)
        seen.append((numba.get_num_threads(), kernel_threads(), numba.get_num_threads()))

    t = threading.Thread(target=task)
    t.start()
    t.join()
    assert seen == [(numba.config.NUMBA_NUM_THREADS, 1, 1)]
    share = max(1, (os.cpu_count() or 1) // 2)  # worker_env(2): the cores shared by 2 workers
    assert client.gather([client.submit(kernel_threads, pure=False, workers=[w])
                          for w in client.scheduler_info()["workers"]]) == [share, share]


@pytest.mark.slow
def test_same_bits_on_one_two_and_four_workers(cluster, client):
    runs = {}
    for n in (2, 1, 4):
        cluster.scale(n)
        client.wait_for_workers(n, timeout=60)
        deadline = time.monotonic() + 60
        while len(client.scheduler_info()["workers"]) != n:  # scaling down retires lazily
            assert time.monotonic() < deadline, f"the cluster did not scale to {n} workers"
            time.sleep(0.1)
        runs[n] = _dask_fit(cluster, "softmax", "l2", "lbfgs", {})
        assert runs[n].backend_facts["backend.workers"] == n
    cluster.scale(2)
    client.wait_for_workers(2, timeout=60)
    for n in (1, 4):
        np.testing.assert_array_equal(runs[n].W, runs[2].W)
        np.testing.assert_array_equal(runs[n].b, runs[2].b)


@pytest.mark.slow
def test_a_worker_killed_mid_fit_is_replaced_and_the_bits_stay(cluster, client):
    client.wait_for_workers(2, timeout=60)
    want = _dask_fit(cluster, "logistic", "l2", "lbfgs", {})
    victim = next(iter(client.run(os.getpid).values()))
    counter = LoadCounter()
    cluster.scheduler.add_plugin(counter, name="load-counter")

    def kill_at_step_3(step, *rest):
        if step == 3:
            os.kill(victim, signal.SIGKILL)

    try:
        got = _dask_fit(cluster, "logistic", "l2", "lbfgs", {}, callback=kill_at_step_3)
    finally:
        cluster.scheduler.remove_plugin(name="load-counter")
    assert victim not in client.run(os.getpid).values()
    reloaded = [k for k, n in counter.loads.items() if n > 1]
    assert len(counter.loads) == 6 and reloaded, counter.loads  # the dead worker's chunks
    np.testing.assert_array_equal(got.W, want.W)
    np.testing.assert_array_equal(got.b, want.b)
    assert got.n_iter == want.n_iter


@pytest.mark.slow
def test_ctrl_c_mid_fit_closes_the_cluster_the_fit_started(monkeypatch):
    seen, connect = [], dask_backend.connect

    @contextlib.contextmanager
    def recording(*args):
        with connect(*args) as (client, facts):
            seen.append(facts["backend.cluster_address"])
            yield client, facts

    def interrupt_at_step_2(step, *rest):
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(dask_backend, "connect", recording)

    X, y = _data("logistic")
    with pytest.raises(KeyboardInterrupt):
        fit(X, y, model="logistic", reg="l2", lam=0.05, solver="lbfgs", backend="dask",
            backend_options={"n_workers": 1, "chunk_rows": CHUNK}, callback=interrupt_at_step_2)
    assert seen and seen[0].startswith("tcp://127.0.0.1:")
    with pytest.raises(ConnectionError):  # the scheduler is gone, and with it its workers
        dask_backend.check_address(seen[0], timeout=1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_where_nothing_answers_fails_within_seconds():
    X, y = _data("logistic")
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="backend.address=.*LocalCluster"):
        fit(X, y, model="logistic", backend="dask", backend_options={"address": address})
    assert time.perf_counter() - t0 < 6.0


@pytest.mark.parametrize("options, error, words", [
    ({"n_worker": 2}, TypeError, ["n_worker", "n_workers"]),
    ({"n_workers": 0}, ValueError, ["n_workers=0", ">= 1"]),
    ({"chunk_rows": 1.5}, TypeError, ["chunk_rows"]),
    ({"timeout": -1.0}, ValueError, ["timeout"]),
    ({"address": "localhost"}, ValueError, ["tcp://host:port"]),
])
def test_bad_backend_options_fail_before_any_work(options, error, words):
    X, y = _data("logistic")
    with pytest.raises(error) as err:
        fit(X, y, model="logistic", backend="dask", backend_options=options)
    for w in words:
        assert w in str(err.value)


def test_options_for_another_backend_and_solvers_dask_cannot_run_are_refused():
    X, y = _data("logistic")
    with pytest.raises(TypeError, match="backend='dask' only"):
        fit(X, y, model="logistic", backend_options={"n_workers": 2})
    with pytest.raises(ValueError, match="sgd.*backend=cpu or cuda only.*lbfgs"):
        fit(X, y, model="logistic", solver="sgd", backend="dask")


def test_an_evaluation_that_gets_no_answer_stops_within_its_timeout(client):
    from functools import partial

    from pipeline.objectives_dask import ClusterError, DaskObjective

    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match="no result within 0.5 s"):
        DaskObjective(client, [partial(time.sleep, 2.0)] * 2, "logistic", timeout=0.5)
    assert time.perf_counter() - t0 < 2.0
    time.sleep(2.0)  # the workers' threads are free again for the next test


@pytest.mark.slow
def test_cli_run_on_its_own_local_cluster_records_the_cluster(cli, store):
    # one worker: one process less to start than the default 2, and a value the record can
    # only show if the override reached the cluster
    res = cli("backend=dask", "backend.n_workers=1", "backend.chunk_rows=300",
              "dataset=synth_binary", "tracking.log_model=false", "tracking.log_plots=false",
              f"tracking.uri={store}", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = runs_of(store)
    p = run.data.params
    assert (p["backend.name"], p["backend.n_workers"], p["backend.workers"]) == \
        ("dask", "1", "1")
    assert p["backend.chunk_rows"] == "300" and p["backend.n_chunks"] == "2"  # 600 train rows
    assert p["backend.cluster_address"].startswith("tcp://127.0.0.1:")
    with pytest.raises(ConnectionError):  # the run's cluster is gone
        dask_backend.check_address(p["backend.cluster_address"], timeout=1.0)


def test_cli_with_a_dead_address_is_a_config_error_and_no_run(cli, store):
    res = cli("backend=dask", f"backend.address=tcp://127.0.0.1:{_free_port()}",
              f"tracking.uri={store}", timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "backend.address" in res.stderr and "LocalCluster" in res.stderr
    assert runs_of(store) == []


@pytest.mark.parametrize("overrides, words", [
    (["backend.n_workers=0"], ["backend.n_workers=0", ">= 1"]),
    (["backend.timeout=0"], ["backend.timeout=0", "> 0"]),
    (["+backend.bogus=1"], ["backend.bogus", "backend=dask", "n_workers"]),
    (["backend.address=localhost"], ["tcp://host:port"]),
])
def test_backend_dask_config_is_checked_like_the_api(overrides, words):
    from pipeline.config import ConfigError

    from .conftest import compose

    config = compose(["backend=dask"])
    assert dask_backend.check_options(
        {k: getattr(config.backend, k) for k in ("n_workers", "chunk_rows", "timeout")})
    with pytest.raises(ConfigError) as err:
        compose(["backend=dask", *overrides])
    for w in words:
        assert w in str(err.value)
