"""``backend="dask"``: the options, the cluster's lifetime and the chunks of in-memory arrays.

A fit on this backend either joins an existing scheduler (``address``) or starts a
``LocalCluster`` on 127.0.0.1 for the fit and closes it at the end, also on an error or Ctrl-C.
An address that does not answer fails before any work, within ``CONNECT_TIMEOUT_S``.

In-memory arrays (``pipeline.fit(X, y, backend="dask")``) are never sent through the scheduler:
they are written once as two ``.npy`` files in a scratch folder that the workers memory-map,
each reading only its own chunks' rows (:class:`pipeline.objectives_dask.NpyRows`). On one
machine that is the page cache; on a real cluster ``scratch_dir`` must be a path every worker
sees (a shared file system), or give the fit a chunked source the workers can read instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 10.0
DEFAULT_CHUNK_ROWS = 65_536  # fixed, not derived from the worker count: the bits must not be


class ClusterError(RuntimeError):
    """The cluster could not give a result within the time allowed (workers lost, a task that
    failed on every worker it was tried on, or no answer)."""


@dataclass(frozen=True)
class DaskOptions:
    """The options of ``backend="dask"`` (``backend_options=`` of ``pipeline.fit``, the
    ``backend.*`` keys of the app).

    Attributes
    ----------
    address : str or None
        An existing scheduler (``tcp://host:8786``); None starts a LocalCluster on 127.0.0.1.
    n_workers, threads_per_worker : int
        Of the LocalCluster (ignored with ``address``). Each worker's numba kernels use
        ``cores // n_workers`` threads.
    chunk_rows : int
        Rows per chunk. The result depends on it (the order of the sums), never on the
        number of workers; ``ArrayObjective(chunk_rows=same)`` gives the same bits in process.
    timeout : float
        Seconds one evaluation may wait for the cluster before the fit stops with an error.
    scratch_dir : str or None
        Where in-memory arrays are written for the workers to read (None: a temporary folder;
        with a remote ``address``, a path every worker sees).
    """

    address: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    timeout: float = 120.0
    scratch_dir: str | None = None


def check_options(given: Mapping[str, Any] | None) -> DaskOptions:
    """``given`` as :class:`DaskOptions`: ``TypeError`` for an unknown key or a value of the
    wrong type (naming it), ``ValueError`` for one out of range."""
    given = dict(given or {})
    known = [f.name for f in fields(DaskOptions)]
    unknown = sorted(k for k in given if k not in known)
    if unknown:
        raise TypeError(f"unknown backend option(s) for backend='dask': {', '.join(unknown)}; "
                        f"its options: {', '.join(known)}")
    for key in ("n_workers", "threads_per_worker", "chunk_rows"):
        value = given.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"backend option {key}={value!r} must be an integer")
        if value < 1:
            raise ValueError(f"backend option {key}={value!r} is out of range; allowed: >= 1")
    timeout = given.get("timeout", 1.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"backend option timeout={timeout!r} must be a number of seconds")
    if not np.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"backend option timeout={timeout!r} is out of range; allowed: > 0")
    for key in ("address", "scratch_dir"):
        if given.get(key) is not None and not isinstance(given[key], str):
            raise TypeError(f"backend option {key}={given[key]!r} must be a string or None")
    if given.get("address") is not None:
        check_address(given["address"])
    return DaskOptions(**given)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``ConnectionError`` unless a TCP server answers at ``address`` within ``timeout``
    seconds (``ValueError`` for an address that is not ``tcp://host:port``)."""
    url = urlparse(address if "://" in address else f"tcp://{address}")
    if url.scheme != "tcp" or not url.hostname or url.port is None:
        raise ValueError(f"backend.address={address!r} is not a scheduler address; allowed: "
                         "tcp://host:port (e.g. tcp://127.0.0.1:8786), or unset for a "
                         "LocalCluster")
    try:
        with socket.create_connection((url.hostname, url.port), timeout=timeout):
            pass
    except OSError as err:
        raise ConnectionError(
            f"backend.address={address!r}: no Dask scheduler answers there "
            f"({err.strerror or type(err).__name__}, waited up to {timeout:g} s); start one "
            "(`dask scheduler` and `dask worker <address>`) or leave backend.address unset "
            "to run a LocalCluster on this machine") from None


def worker_env(n_workers: int) -> dict[str, str]:
    """Environment of the LocalCluster's workers: the cores shared out, BLAS at one thread."""
    cores = os.cpu_count() or 1
    env = {"NUMBA_NUM_THREADS": str(max(1, cores // n_workers)), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {k: os.environ.get(k, v) if k != "NUMBA_NUM_THREADS" else v for k, v in env.items()}


@contextlib.contextmanager
def connect(options: DaskOptions,
            dtype: str = "float64") -> Iterator[tuple[Any, dict[str, Any]]]:
    """A client of the configured cluster with the kernel plugin registered (kernels warmed
    for ``dtype`` inputs), and its facts (``cluster_address``, ``workers``); a LocalCluster
    started here is closed on exit."""
    from distributed import Client, LocalCluster

    from .objectives_dask import KernelWarmup

    cluster = None
    with contextlib.ExitStack() as stack:
        if options.address is not None:
            check_address(options.address)
            client = Client(options.address, timeout=CONNECT_TIMEOUT_S)
        else:
            cluster = LocalCluster(n_workers=options.n_workers,
                                   threads_per_worker=options.threads_per_worker,
                                   processes=True, host="127.0.0.1", dashboard_address=None,
                                   worker_dashboard_address=None, silence_logs=logging.ERROR,
                                   env=worker_env(options.n_workers))
            stack.callback(_close, cluster)
            client = Client(cluster, timeout=CONNECT_TIMEOUT_S)
        stack.callback(_close, client)
        client.register_plugin(KernelWarmup(dtype))
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        if not workers:
            raise ConnectionError(f"backend.address={options.address!r}: the scheduler has no "
                                  "workers; start some (`dask worker <address>`)")
        yield client, {"backend.cluster_address": client.scheduler.address,
                       "backend.workers": len(workers)}


def _close(thing: Any) -> None:
    """Close a client or cluster, bounded in time; a failure to close never hides the error
    that made the fit stop."""
    with contextlib.suppress(Exception):
        thing.close(timeout=CLOSE_TIMEOUT_S)


@contextlib.contextmanager
def array_loaders(X: np.ndarray, T: np.ndarray, chunk_rows: int,
                  scratch_dir: str | None = None) -> Iterator[list]:
    """Chunk loaders for in-memory ``X`` and ``T`` (as ``check_targets`` gives it): both are
    written once as ``.npy`` files under ``scratch_dir`` and read back by the workers, a
    row range each; the files are removed on exit."""
    from .objectives_dask import NpyRows

    folder = Path(tempfile.mkdtemp(prefix="pipeline-dask-", dir=scratch_dir))
    try:
        np.save(folder / "X.npy", X, allow_pickle=False)
        np.save(folder / "T.npy", np.asarray(T, dtype=np.float64), allow_pickle=False)
        n = X.shape[0]
        yield [NpyRows(str(folder / "X.npy"), str(folder / "T.npy"), lo, min(n, lo + chunk_rows))
               for lo in range(0, max(n, 1), chunk_rows)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def array_objective(model: str, X: np.ndarray, T: np.ndarray, n_classes: int,
                    options: DaskOptions, dtype: str,
                    sample_weight: np.ndarray | None = None) -> Iterator[Any]:
    """A :class:`pipeline.objectives_dask.DaskObjective` over in-memory arrays for one fit,
    with the cluster and the scratch files it needs; all released on exit. Its
    ``backend_facts`` say where it ran and how it was chunked (logged by the app). With
    ``sample_weight`` the targets are encoded here, the weights as their last column, so
    each worker's chunks carry their rows' weights."""
    from .objectives import encode_targets
    from .objectives_dask import DaskObjective

    total = None if sample_weight is None else math.fsum(sample_weight)
    if sample_weight is not None:
        T = encode_targets(model, T, n_classes, sample_weight)
    with connect(options, dtype) as (client, facts), \
            array_loaders(X, T, options.chunk_rows, options.scratch_dir) as loaders:
        objective = DaskObjective(
            client, loaders, model, n_classes, dtype=dtype, timeout=options.timeout,
            encoded=total is not None, weight_total=total)
        objective.backend_facts = {**facts, "backend.n_chunks": len(loaders)}
        try:
            yield objective
        finally:
            with contextlib.suppress(Exception):
                objective.release()


@contextlib.contextmanager
def source_objective(source: Any, y: Any, model: str, solver: str, options: DaskOptions,
                     dtype: str) -> Iterator[tuple[Any, np.ndarray | None]]:
    """A DaskObjective over a :class:`pipeline.chunked.ChunkedSource`, and its class labels.

    The targets are scanned and checked on the driver first (one streamed pass over the
    target column only, as on backend cpu); then each worker reads and encodes its own chunks
    with the source's picklable loaders. The source's chunking is the one used
    (``chunk_rows`` of the options does not apply): the result equals the streamed fit's and
    ``ArrayObjective(chunk_rows=source.chunk_rows)``'s bits. The workers must see the
    source's path (one machine, or a shared file system).
    """
    from .objectives_dask import DaskObjective
    from .streamed import streamed_problem

    streamed, classes = streamed_problem(source, y, model, solver, dtype, "cpu")
    with connect(options, dtype) as (client, facts):
        objective = DaskObjective(client, streamed.encoded_loaders(), model,
                                  0 if classes is None else len(classes), dtype=dtype,
                                  timeout=options.timeout, encoded=True)
        objective.backend_facts = {**facts, "backend.n_chunks": len(source.bounds)}
        try:
            yield objective, classes
        finally:
            with contextlib.suppress(Exception):
                objective.release()
