"""The data-source seam on a Dask cluster: chunks resident on the workers, sums added here.

The workers load their chunks themselves (``client.map`` over picklable zero-argument loaders:
row ranges of a ``.npy`` file, a chunked source's readers, a seeded generator), encode the
targets once and keep the chunks in memory as futures. An evaluation sends only its small
arguments (W, b and, for Hessian products, V, vb), runs the chunk operation
(``pipeline.chunk_ops``, i.e. the numba kernels) on every chunk where it lives, and brings back
one part per chunk; the base class adds the parts in chunk order. The weights are then the same
bits for any number of workers and equal to ``ArrayObjective(..., chunk_rows=same)``.

One task per worker and evaluation (running that worker's chunks in chunk order), not one per
chunk: the scheduler's cost is per task (about 2.5 ms each on loopback), and 32 chunks on 2
workers would pay it 32 times. The chunk futures stay ordinary futures, so when a worker dies
the scheduler recomputes its chunks from their loaders on another worker and the evaluation
that needed them waits for that; every wait is bounded (``timeout``), never a hang.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from . import chunk_ops
from .dask_backend import ClusterError
from .objectives import Objective, encode_targets

PLUGIN_NAME = "pipeline-kernels"
# Arguments up to this many bytes travel inside the tasks; larger ones are scattered to every
# worker once per evaluation. Measured on a 2-worker LocalCluster (2 tasks): 0.8 MB of W took
# 25.6 ms in the tasks against 31.9 ms scattered, 8 MB 74.6 ms against 66.6 ms.
SCATTER_BYTES = 4 * 2**20


# ----------------------------------------------------------------------------- on the workers
@dataclass(frozen=True)
class NpyRows:
    """Rows ``lo:hi`` of X and T stored as two ``.npy`` files: a picklable chunk loader.

    The files are memory-mapped on the worker and only the chunk's rows are copied out, so
    a worker reads its own chunks and nothing goes through the driver or the scheduler.
    """

    x_path: str
    t_path: str
    lo: int
    hi: int

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        X = np.load(self.x_path, mmap_mode="r")
        T = np.load(self.t_path, mmap_mode="r")
        return np.array(X[self.lo:self.hi]), np.array(T[self.lo:self.hi])


@dataclass(frozen=True)
class SyntheticChunk:
    """Chunk ``index`` of a generated classification set, made on the worker from its seed.

    X is standard normal (seeded per chunk: the same rows whoever makes them); the labels come
    from a fixed random linear model (seeded by ``seed`` alone) plus Gumbel noise, so the set
    has a finite optimum. ``n_classes`` 2: one 0/1 column; more: one class-index column.
    """

    rows: int
    n_features: int
    n_classes: int
    seed: int
    index: int
    dtype: str = "float64"

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        k, m = self.n_features, self.n_classes
        W = np.random.default_rng(self.seed).standard_normal((k, m)) / np.sqrt(k)
        rng = np.random.default_rng([self.seed, self.index])
        X = rng.standard_normal((self.rows, k)).astype(self.dtype)
        Z = X @ W + rng.gumbel(size=(self.rows, m))
        return X, Z.argmax(axis=1).astype(np.float64)[:, None]


def load_chunk(loader: Callable[[], tuple[Any, Any]], model: str, n_classes: int,
               dtype: str, encoded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run ``loader`` on the worker: X as C-contiguous ``dtype``, T encoded for the model.

    ``loader()`` returns X (rows, k) and T as :func:`pipeline.validation.check_targets` gives
    it (class codes for softmax / ovr, 0/1 for logistic, values for linear), (rows,) or
    (rows, m); or, with ``encoded``, T already encoded (a streamed source's loaders).
    """
    X, T = loader()
    X = np.ascontiguousarray(X, dtype=dtype)
    T = np.asarray(T, dtype=np.float64).reshape(X.shape[0], -1)
    if not encoded:
        T = encode_targets(model, T, n_classes)
    return X, np.ascontiguousarray(T, dtype=np.float64)


def chunk_shape(chunk: tuple[np.ndarray, np.ndarray]) -> tuple[int, int, int]:
    """(rows, k, m) of a resident chunk."""
    X, T = chunk
    return X.shape[0], X.shape[1], T.shape[1]


def kernel_threads() -> int:
    """Set the calling thread's numba thread count to the worker's share of the cores, the
    ``NUMBA_NUM_THREADS`` of its environment (``dask_backend.worker_env``: cores // workers),
    and return it (numba's own count where the variable is unset).

    numba reads that variable once, when it is first imported, and a spawned worker imports
    the driver's main module before its nanny sets the worker's environment: a script that
    imports ``pipeline`` at its top thus gave every worker numba's default of all the cores
    (2 workers x 2 threads on 2 cores; measured on the workers). The count is also per thread
    in numba, so it is set in the thread that runs the task. Bits do not depend on it.
    """
    import numba

    want = os.environ.get("NUMBA_NUM_THREADS", "")
    n = numba.get_num_threads()
    if want.isdigit():
        n = max(1, min(int(want), int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))))
        if numba.get_num_threads() != n:
            numba.set_num_threads(n)
    return n


def run_chunks(chunks: Sequence[tuple[np.ndarray, np.ndarray]], op: Callable[..., Any],
               args: tuple) -> list:
    """``op(X_c, T_c, *args)`` for each of this worker's chunks, in the order given (numba on
    the worker's share of the cores, :func:`kernel_threads`)."""
    kernel_threads()
    return [op(X, T, *args) for X, T in chunks]


def take_rows(chunk: tuple[np.ndarray, np.ndarray],
              rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the chunk's rows ``rows`` (local indices)."""
    X, T = chunk
    return np.ascontiguousarray(X[rows]), np.ascontiguousarray(T[rows])


def warm_kernels(dtype: str = "float64") -> float:
    """Compile (or load from numba's on-disk cache) every chunk kernel for ``dtype`` inputs on
    tiny data; returns the seconds it took. Run once per worker by the plugin."""
    import kernels

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3)).astype(dtype)
    for model, T in (("linear", rng.standard_normal((8, 1))),
                     ("logistic", (rng.random((8, 1)) > 0.5).astype(np.float64)),
                     ("softmax", rng.integers(0, 3, (8, 1)).astype(np.float64))):
        kind = kernels.KINDS[model]
        m = 3 if model == "softmax" else 1
        W, b = np.zeros((3, m)), np.zeros(m)
        chunk_ops.loss_grad(X, T, kind, W, b)
        chunk_ops.hessp(X, T, kind, W, b, W, b)
        chunk_ops.classified(X, T, model, W, b)
    chunk_ops.gram(X, T)
    chunk_ops.logistic_hessian(X, T, np.zeros(3), 0.0)
    return time.perf_counter() - t0


class KernelWarmup(WorkerPlugin):
    """Worker plugin: imports and warms the numba kernels when a worker joins (also a worker
    that replaces a dead one), so no evaluation pays numba's compile or cache load.
    """

    idempotent = True

    def __init__(self, dtype: str = "float64"):
        self.dtype = dtype
        self.name = f"{PLUGIN_NAME}-{dtype}"  # one per storage dtype: each compiles its own

    def setup(self, worker: Any) -> None:
        worker.kernels_warmed_in_s = warm_kernels(self.dtype)

    def teardown(self, worker: Any) -> None:
        """Nothing to release."""


# ----------------------------------------------------------------------------- on the driver
def _group_by_worker(who_has: dict[Any, Any], keys: list, n_chunks: int) -> list[list[int]]:
    """Chunk indices grouped by the worker holding them (chunk order inside each group);
    chunks held nowhere yet (being recomputed) form groups of one."""
    groups: dict[str, list[int]] = {}
    lone: list[list[int]] = []
    for i in range(n_chunks):
        holders = sorted(who_has.get(keys[i], ()))
        if holders:
            groups.setdefault(holders[0], []).append(i)
        else:
            lone.append([i])
    return list(groups.values()) + lone


class DaskObjective(Objective):
    """Mean data loss over chunks resident on the workers of a Dask cluster.

    Parameters
    ----------
    client : distributed.Client
        A connected client (its cluster's lifetime is the caller's: ``pipeline.dask_backend``).
    loaders : sequence of zero-argument callables, picklable
        One per chunk, in chunk order; each returns ``(X_c, T_c)`` (see :func:`load_chunk`).
        They run on the workers, again if a worker holding their chunk dies.
    model : str
    n_classes : int
        Classes (softmax, ovr), else ignored.
    dtype : str
        Storage of X on the workers (float64 or float32).
    timeout : float
        Seconds one evaluation may wait for the cluster before :class:`ClusterError`.
    encoded : bool
        The loaders' targets are already encoded (a streamed source's ``encoded_loaders``).
    weight_total : float, optional
        The encoded targets carry row weights in their last column, summing to this.
    """

    backend_facts: dict[str, Any]  # where it ran and how it was chunked (set by its maker)

    def __init__(self, client: Any, loaders: Sequence[Callable[[], Any]], model: str,
                 n_classes: int = 0, *, dtype: str = "float64", timeout: float = 120.0,
                 encoded: bool = False, weight_total: float | None = None):
        from distributed import wait

        self.client, self.timeout, self._wait = client, float(timeout), wait
        if not loaders:
            raise ValueError("a Dask source needs at least one chunk")
        self.chunks = client.map(load_chunk, list(loaders), model=model, n_classes=n_classes,
                                 dtype=dtype, encoded=encoded, pure=False)
        self.keys = [f.key for f in self.chunks]
        shapes = self._gather(client.map(chunk_shape, self.chunks, pure=False))
        rows = [s[0] for s in shapes]
        k, m = shapes[0][1], shapes[0][2]
        if any(s[1:] != (k, m) for s in shapes):
            raise ValueError(f"chunks disagree on (features, target columns): {set(shapes)}")
        m = n_classes if model in ("softmax", "ovr") else m - (weight_total is not None)
        super().__init__(model, int(sum(rows)), k, m, weight_total=weight_total)
        self.chunk_rows = rows
        self.starts = np.concatenate([[0], np.cumsum(rows)])
        self.dtype = dtype
        self.evaluations = 0
        self._groups = self._placement()

    # ------------------------------------------------------------------ waiting, bounded
    def _gather(self, futures: list) -> list:
        """The futures' results in the order given, or a ``ClusterError`` after ``timeout``."""
        try:
            self._wait(futures, timeout=self.timeout)
            return self.client.gather(futures)
        except TimeoutError:
            raise ClusterError(
                f"the Dask cluster gave no result within {self.timeout:g} s "
                "(backend.timeout): workers lost or overloaded; check the workers' logs, "
                "or raise backend.timeout for very large chunks") from None
        except Exception as err:
            if type(err).__name__ == "KilledWorker":
                raise ClusterError(f"a task failed on every worker it was tried on ({err}): "
                                   "the workers keep dying (out of memory?)") from err
            raise

    def _placement(self) -> list[list[int]]:
        return _group_by_worker(self.client.who_has(self.chunks), self.keys, len(self.chunks))

    # ------------------------------------------------------------------ the seam
    def map_chunks(self, op, *args) -> list:
        """One task per worker over the chunks it holds; the parts come back in chunk order.

        If the placement changed meanwhile (a worker died and its chunks were recomputed
        elsewhere), the tasks still run, fetching what they miss; the placement is read again
        after every evaluation for the next one.
        """
        self.evaluations += 1
        groups = self._groups
        args = self._ship(args)
        futures = [self.client.submit(run_chunks, [self.chunks[i] for i in g], op, args,
                                      pure=False) for g in groups]
        try:
            results = self._gather(futures)
        finally:
            self._groups = self._placement()
        parts: list = [None] * len(self.chunks)
        for g, res in zip(groups, results, strict=True):
            for i, part in zip(g, res, strict=True):
                parts[i] = part
        return parts

    def _ship(self, args: tuple) -> tuple:
        """``args`` as the tasks take them: as they are while small, else their arrays
        scattered to every worker (futures the tasks resolve)."""
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        if sum(a.nbytes for a in arrays) <= SCATTER_BYTES:
            return args
        return tuple(self.client.scatter(a, broadcast=True, hash=False)
                     if isinstance(a, np.ndarray) else a for a in args)

    def take(self, rows) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.intp)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        futures, order = [], []
        for c in np.unique(which):
            local = np.flatnonzero(which == c)
            futures.append(self.client.submit(take_rows, self.chunks[c],
                                              rows[local] - self.starts[c], pure=False))
            order.append(local)
        parts = self._gather(futures)
        k, m = self.n_features, parts[0][1].shape[1] if parts else 1
        X = np.empty((len(rows), k), dtype=self.dtype)
        T = np.empty((len(rows), m))
        for idx, (Xc, Tc) in zip(order, parts, strict=True):
            X[idx], T[idx] = Xc, Tc
        return X, T

    def release(self) -> None:
        """Drop the chunks from the workers' memory."""
        for f in self.chunks:
            f.release()
        self.chunks = []
