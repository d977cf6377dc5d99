"""Chunked sources on disk (.npy, .npy shards, Parquet, zarr) and the streamed objective.

With the same chunking, a source streamed from disk must give the in-memory
``ArrayObjective(..., chunk_rows=c)``'s bits for every method of the seam and every solver that
needs only the seam, whatever the storage layout (shards and row groups that chunks straddle).
"""

import functools
import pickle
import threading
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline
from pipeline.chunked import (
    NpyShardsSource,
    NpySource,
    ParquetSource,
    SourceError,
    ZarrSource,
    call,
    open_source,
)
from pipeline.objectives import ArrayObjective
from pipeline.penalties import Penalty
from pipeline.solvers import SOLVERS, Problem, check_solver_options, options_for
from pipeline.solvers.registry import allowed_solvers
from pipeline.streamed import StreamedObjective, column_stats, prefetched, scan_targets
from pipeline.validation import check_targets, check_X

N, K, CHUNK = 1500, 6, 256  # 6 chunks, the last one short; shards/row groups are not 256
MODELS = ("linear", "logistic", "softmax", "ovr", "multilabel")
KINDS = ("npy", "shards", "parquet", "zarr")
SEAM_SOLVERS = ("lbfgs", "split_lbfgs", "newton", "prox_newton", "agd", "gd", "closed_form",
                "cd")
SHARDS = (400, 100, 1000)


def _raw(model: str):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((N, K)) * rng.uniform(0.5, 3.0, K) + rng.normal(0, 2, K)
    Z = X @ rng.standard_normal((K, 3)) + rng.standard_normal((N, 3))
    y = {"linear": Z[:, 0], "logistic": np.where(Z[:, 0] > 0, 5, -1), "softmax": Z.argmax(1),
         "ovr": Z.argmax(1), "multilabel": (Z > 0).astype(np.int64)}[model]
    return X, y


def _write(kind: str, model: str, root):
    """The data of ``model`` stored as ``kind`` under ``root``; returns the source."""
    X, y = _raw(model)
    d = root / f"{kind}-{model}"
    d.mkdir()
    if kind == "npy":
        np.save(d / "X.npy", X)
        np.save(d / "y.npy", y)
        return NpySource(d / "X.npy", d / "y.npy", chunk_rows=CHUNK)
    if kind == "shards":
        (d / "X").mkdir()
        (d / "y").mkdir()
        edges = np.cumsum((0,) + SHARDS)
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            np.save(d / "X" / f"part-{i}.npy", X[a:b])
            np.save(d / "y" / f"part-{i}.npy", y[a:b])
        np.save(d / "y.npy", y)
        target = d / ("y.npy" if model in ("linear", "multilabel") else "y")
        return NpyShardsSource(d / "X", target, chunk_rows=CHUNK)
    if kind == "parquet":
        cols = {f"f{j}": X[:, j] for j in range(K)}
        targets = [f"l{c}" for c in range(3)] if model == "multilabel" else ["label"]
        cols.update({t: (y[:, c] if y.ndim == 2 else y) for c, t in enumerate(targets)})
        cols["note"] = [f"row {i}" for i in range(N)]  # not numeric: not a feature by default
        table = pa.table(cols)
        (d / "set").mkdir()
        pq.write_table(table.slice(0, 700), d / "set" / "part-1.parquet", row_group_size=300)
        pq.write_table(table.slice(700), d / "set" / "part-2.parquet", row_group_size=300)
        return ParquetSource(d / "set", targets if model == "multilabel" else "label",
                             chunk_rows=CHUNK)
    import zarr

    for name, a in (("X", X), ("y", y)):
        z = zarr.create_array(str(d / f"{name}.zarr"), shape=a.shape, dtype=a.dtype,
                              chunks=(100,) + a.shape[1:])
        z[:] = a
    return ZarrSource(d / "X.zarr", d / "y.zarr", chunk_rows=CHUNK)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """``stored(kind, model)``: that source, written on first use (one folder per module)."""
    root, made = tmp_path_factory.mktemp("chunked"), {}

    def get(kind: str, model: str):
        if (kind, model) not in made:
            made[kind, model] = _write(kind, model, root)
        return made[kind, model]
    return get


def _in_memory(model: str, chunk_rows=CHUNK) -> ArrayObjective:
    X, y = _raw(model)
    T, classes = check_targets(model, y, N)
    return ArrayObjective(model, check_X(X), T, 0 if classes is None else len(classes),
                          chunk_rows=chunk_rows)


def _seam_results(obj, model: str) -> list:
    """Every seam method's output at a fixed point, in order (each a float or an array)."""
    rng = np.random.default_rng(1)
    W = rng.standard_normal((K, obj.n_outputs)) * 0.2
    b = rng.standard_normal(obj.n_outputs) * 0.1
    G, gb = obj.zeros()
    H, hb = obj.zeros()
    out = [obj.loss_grad(W, b, G, gb), G, gb]
    obj.hessp(W, b, W[::-1].copy(), b[::-1].copy(), H, hb)
    out += [H, hb, *obj.gram(), obj.classifies_all(W, b), obj.abs_max()]
    if model == "logistic":
        out.append(obj.logistic_hessian(W[:, 0], float(b[0])))
    rows = rng.choice(N, 300)  # unsorted, with repeats
    out += list(obj.take(rows))
    sub = obj.sample(np.sort(rng.choice(N, 40, replace=False)))  # a sparse sample
    out += [sub.loss_grad(W, b, G, gb), G.copy()]
    out += [*obj.column_moments(max_rows=60), *obj.column_moments(max_rows=500)]
    out += [obj.lipschitz(max_rows=500), obj.n_passes]
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", MODELS)
def test_every_seam_method_gives_the_array_objectives_bits(stored, kind, model):
    streamed = StreamedObjective(model, stored(kind, model))
    memory = _in_memory(model)
    assert streamed.bounds == memory.bounds and streamed.n_outputs == memory.n_outputs
    for i, (a, c) in enumerate(zip(_seam_results(streamed, model), _seam_results(memory, model),
                                   strict=True)):
        assert np.array_equal(a, c), f"output {i} differs"


def _solve(objective, solver: str, reg: str, lam: float, **given):
    problem = Problem(objective, Penalty(reg, lam, 0.5, objective.n_features), 1e-8, 100)
    options = options_for(solver, check_solver_options(solver, given), solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SOLVERS[solver].fn(problem, *objective.zeros(), **options)


def _cases():
    for model in MODELS:
        for reg, lam in (("l2", 0.05), ("elasticnet", 0.02)):
            for solver in SEAM_SOLVERS:
                if solver in allowed_solvers(model, reg):
                    yield pytest.param(model, reg, lam, solver, id=f"{model}-{reg}-{solver}")


@pytest.mark.parametrize("model, reg, lam, solver", list(_cases()))
def test_every_seam_solver_fits_a_npy_file_to_the_in_memory_bits(stored, model, reg, lam,
                                                                  solver):
    source = stored("npy", model)
    # Hessian samples smaller than n: exercises take() on the file.
    given = {"newton": {"hessian_sample": 500}, "prox_newton": {"sample": 500}}.get(solver, {})
    a = _solve(StreamedObjective(model, source), solver, reg, lam, **given)
    c = _solve(_in_memory(model), solver, reg, lam, **given)
    assert np.array_equal(a.W, c.W) and np.array_equal(a.b, c.b)
    assert (a.n_passes, a.n_iter, a.criterion) == (c.n_passes, c.n_iter, c.criterion)


def _reopened(source):
    """The same data opened again through ``open_source`` (by path, as the app would)."""
    if isinstance(source, ParquetSource):
        return open_source(source.path, "label", chunk_rows=CHUNK)
    target = source.path.replace("/X", "/y")
    if isinstance(source, NpySource):
        target = target.replace(".npy", "") + ".npy"
    return open_source(source.path, target, chunk_rows=CHUNK)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_takes_a_source_and_equals_the_chunked_in_memory_fit(stored, kind):
    source = _reopened(stored(kind, "ovr"))
    assert type(source) is type(stored(kind, "ovr"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = pipeline.fit(source, None, model="ovr", reg="l2", lam=0.05, solver="lbfgs",
                           tol=1e-8, max_iter=100)
    want = _solve(_in_memory("ovr"), "lbfgs", "l2", 0.05)
    assert np.array_equal(got.W, want.W) and np.array_equal(got.b, want.b)
    assert got.n_passes == want.n_passes and got.classes.tolist() == [0, 1, 2]
    X, y = _raw("ovr")
    assert np.array_equal(pipeline.predict(got, source), pipeline.predict(got, X))
    assert np.array_equal(pipeline.predict_proba(got, source), pipeline.predict_proba(got, X))


def test_auto_on_a_source_picks_a_streaming_solver_and_sgd_is_refused(stored):
    source = stored("npy", "logistic")
    result = pipeline.fit(source, None, model="logistic", reg="l1", lam=0.01)
    assert result.solver == "prox_newton" and result.converged
    assert result.classes.tolist() == [-1, 5]
    with pytest.raises(ValueError, match=r"solver='sgd' .* needs X in memory.*prox_newton"):
        pipeline.fit(source, None, model="logistic", solver="sgd")
    with pytest.raises(TypeError, match="y must be None"):
        pipeline.fit(source, np.zeros(N), model="logistic")
    with pytest.raises(ValueError, match="backend='cuda' does not take a ChunkedSource"):
        pipeline.fit(source, None, model="logistic", backend="cuda")


@pytest.mark.parametrize("kind", KINDS)
def test_loaders_pickle_and_hold_no_open_files(stored, kind):
    loaders = stored(kind, "multilabel").loaders()
    again = pickle.loads(pickle.dumps(loaders))
    X, y = _raw("multilabel")
    assert np.array_equal(np.concatenate([call(f)[0] for f in again]), X)
    assert np.array_equal(np.concatenate([call(f)[1] for f in again]), y)


@pytest.mark.parametrize("kind", ("npy", "shards"))
def test_mapped_loaders_give_views_of_a_map_of_the_chunk_alone(stored, kind):
    """A streamed pass reads .npy chunks through a map of their own rows: the same values as
    the copies, no copy (a view of an mmap), the map released with its last view; a chunk
    over several shards is copied (the shard edges 400 and 500 both fall inside chunk 1)."""
    import mmap
    import weakref

    source = stored(kind, "multilabel")
    copies, maps = source.loaders(), source.loaders(mapped=True)
    X, _ = _raw("multilabel")
    mapped_chunks = 0
    for (lo, hi), copy, mapped in zip(source.bounds, copies, maps, strict=True):
        Xm, ym = call(mapped)
        assert np.array_equal(Xm, X[lo:hi]) and np.array_equal(ym, call(copy)[1])
        base = Xm.base
        while base is not None and not isinstance(base, mmap.mmap):
            base = getattr(base, "obj", getattr(base, "base", None))
        if base is None:  # a straddling chunk of the shards: a plain copy
            assert kind == "shards" and Xm.flags.owndata
            continue
        mapped_chunks += 1
        assert len(base) < 2 * (hi - lo) * K * 8 + mmap.PAGESIZE  # its rows, not the file
        assert Xm.flags.writeable  # the same compiled kernels as for copies
        gone = weakref.finalize(base, lambda: None)
        del Xm, base
        assert not gone.alive  # unmapped once the chunk is dropped
    assert mapped_chunks == (6 if kind == "npy" else 5)


def test_a_mapped_chunk_of_a_truncated_file_is_a_source_error(tmp_path):
    from pipeline.chunk_map import map_npy_rows

    x = _npy(tmp_path / "X.npy", np.ones((1000, 4)))
    source = NpySource(x, _npy(tmp_path / "y.npy", np.zeros(1000)), chunk_rows=300)
    with open(x, "r+b") as fh:
        fh.truncate(200 + 500 * 32)
    loaders = source.loaders(mapped=True)
    assert call(loaders[0])[0].shape == (300, 4)
    with pytest.raises(SourceError, match="ended early"):
        call(loaders[1])
    assert map_npy_rows(str(x), 128, (4,), "<f8", 5, 5).shape == (0, 4)


@pytest.mark.parametrize("model", MODELS)
def test_a_hessian_sample_too_large_to_hold_is_accumulated_chunk_by_chunk(stored, model,
                                                                           monkeypatch):
    """Above the source's max_sample_bytes newton's sampled Hessian is one ((k+1) m)^2 matrix
    summed over the chunks' sampled rows: its products equal those on the taken rows, the fit
    reaches the in-memory optimum, and no row sample is taken."""
    from pipeline.solvers import second_order

    source = stored("npy", model)
    obj = StreamedObjective(model, source)
    problem = Problem(obj, Penalty("l2", 1e-2, 0.5, K), 1e-10, 100)
    obj.max_sample_bytes = 400 * K * 8  # a sample of 500 rows is over it
    acc = second_order.sampled_hessian(problem, 500)
    obj.max_sample_bytes = np.inf
    held = second_order.sampled_hessian(problem, 500)
    assert isinstance(acc, second_order._AccumulatedHessian)
    assert isinstance(held, second_order._SampledHessian)
    rng = np.random.default_rng(3)
    W = rng.standard_normal((K, obj.n_outputs)) * 0.3
    b = rng.standard_normal(obj.n_outputs) * 0.1
    for _ in range(2):
        V, vb = rng.standard_normal(W.shape), rng.standard_normal(b.shape)
        got, want = obj.zeros(), obj.zeros()
        acc.hessp(W, b, V, vb, *got)
        held.hessp(W, b, V, vb, *want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)

    monkeypatch.setattr("pipeline.streamed.SAMPLE_BYTES", 400 * K * 8)
    taken, take = [], StreamedObjective.take
    monkeypatch.setattr(StreamedObjective, "take",
                        lambda self, rows: taken.append(len(rows)) or take(self, rows))
    opts = {"hessian_sample": 500, "tol": 1e-9, "max_iter": 200}
    got = pipeline.fit(source, None, model=model, reg="l2", lam=1e-2, solver="newton", **opts)
    X, y = _raw(model)
    want = pipeline.fit(X, y, model=model, reg="l2", lam=1e-2, solver="newton", **opts)
    assert got.converged and 500 not in taken  # the column moments' sample only
    np.testing.assert_allclose(got.W, want.W, atol=1e-7)
    np.testing.assert_allclose(got.b, want.b, atol=1e-7)


def test_column_stats_are_the_exact_moments(stored):
    X, _ = _raw("linear")
    mean, std = column_stats(stored("shards", "linear"))
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(std, X.std(axis=0), rtol=1e-13)


def test_the_reader_stays_a_bounded_number_of_chunks_ahead():
    started, consumed = [], []

    def loader(i):
        started.append(i)
        time.sleep(0.002)
        return i

    items = [functools.partial(loader, i) for i in range(12)]
    for i in prefetched(items, depth=2):
        time.sleep(0.01)  # a slow kernel: the reader must wait, not run ahead
        consumed.append(i)
        # queued (<= 2) + the one being read (1): never more started than consumed + 3
        assert len(started) <= len(consumed) + 3
    assert consumed == list(range(12))


def test_a_reader_error_reaches_the_consumer_and_an_early_stop_ends_the_thread():
    def bad():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetched([lambda: 1, bad, lambda: 3]))
    before = threading.active_count()
    for _ in prefetched([lambda: np.zeros(3)] * 50, depth=1):
        break
    assert threading.active_count() == before


def test_string_labels_are_scanned_like_check_targets(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 3))
    labels = rng.choice(np.array(["cat", "dog", "emu"]), 500)
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "kind": labels}),
                   tmp_path / "t.parquet", row_group_size=64)
    source = ParquetSource(tmp_path / "t.parquet", "kind")
    assert source.chunk_rows == 64 and source.feature_names == ["a", "b", "c"]
    assert scan_targets("softmax", source).tolist() == ["cat", "dog", "emu"]
    with pytest.raises(ValueError, match="logistic needs exactly 2 classes; y has 3"):
        scan_targets("logistic", source)
    obj = StreamedObjective("softmax", source)
    T, classes = check_targets("softmax", labels, 500)
    memory = ArrayObjective("softmax", X, T, 3, chunk_rows=64)
    W, b = obj.zeros()
    W += 0.1
    G, gb = obj.zeros()
    assert obj.loss_grad(W, b, G, gb) == memory.loss_grad(W, b, *memory.zeros())


# --------------------------------------------------------------------------- clear errors
def _npy(path, a):
    np.save(path, a)
    return path


def test_npy_errors_name_the_argument_and_the_fix(tmp_path):
    X = np.ones((10, 2))
    x = _npy(tmp_path / "X.npy", X)
    with pytest.raises(SourceError, match=r"path=.*nope.npy.*no such file.*relative paths"):
        NpySource(tmp_path / "nope.npy", x)
    with pytest.raises(SourceError, match=r"target=.*y.npy.*no such file"):
        NpySource(x, tmp_path / "y.npy")
    with pytest.raises(SourceError, match=r"target=.*has 9 rows but X .* has 10; they must"):
        NpySource(x, _npy(tmp_path / "y9.npy", np.zeros(9)))
    with pytest.raises(SourceError, match="Fortran .* np.ascontiguousarray"):
        NpySource(_npy(tmp_path / "F.npy", np.asfortranarray(np.ones((10, 2)))), x)
    with pytest.raises(SourceError, match="must be 2-D"):
        NpySource(_npy(tmp_path / "v.npy", np.ones(10)), x)
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(SourceError, match="not a readable .npy file .* numpy.save"):
        NpySource(tmp_path / "junk.npy", x)
    with pytest.raises(ValueError, match="chunk_rows=0 must be >= 1"):
        NpySource(x, _npy(tmp_path / "y.npy", np.zeros(10)), chunk_rows=0)


def test_bad_values_are_found_while_streaming_with_their_rows(tmp_path):
    X = np.ones((50, 2))
    X[37, 1] = np.nan
    y = np.arange(50) % 2
    source = NpySource(_npy(tmp_path / "X.npy", X), _npy(tmp_path / "y.npy", y), chunk_rows=8)
    with pytest.raises(SourceError, match=r"X \(.*X.npy\) has NaN/inf value\(s\) in rows \[37\]"):
        pipeline.fit(source, None, model="logistic", reg="l2", lam=1.0)
    y = y.astype(float)
    y[41] = np.inf
    source = NpySource(tmp_path / "X.npy", _npy(tmp_path / "y2.npy", y), chunk_rows=8)
    with pytest.raises(SourceError, match=r"target has 1 missing or non-finite .* rows \[41\]"):
        pipeline.fit(source, None, model="linear")
    source = NpySource(tmp_path / "X.npy", _npy(tmp_path / "y3.npy", np.ones(50)))
    with pytest.raises(ValueError, match=r"only one class"):
        pipeline.fit(source, None, model="logistic")


def test_shard_errors_name_the_shard(tmp_path):
    (tmp_path / "X").mkdir()
    np.save(tmp_path / "X" / "part-0.npy", np.ones((5, 3)))
    np.save(tmp_path / "X" / "part-1.npy", np.ones((5, 4)))
    y = _npy(tmp_path / "y.npy", np.zeros(10))
    with pytest.raises(SourceError, match=r"ragged shards .*'part-1.npy' has rows of shape \(4,\)"):
        NpyShardsSource(tmp_path / "X", y)
    (tmp_path / "E").mkdir()
    with pytest.raises(SourceError, match="holds no shard matching '\\*.npy'"):
        NpyShardsSource(tmp_path / "E", y)
    np.save(tmp_path / "X" / "part-1.npy", np.ones((5, 3)))
    (tmp_path / "Y").mkdir()
    np.save(tmp_path / "Y" / "part-0.npy", np.zeros(5))
    np.save(tmp_path / "Y" / "part-1.npy", np.zeros(4))
    with pytest.raises(SourceError, match=r"one target shard per X shard with the same rows"):
        NpyShardsSource(tmp_path / "X", tmp_path / "Y")


def test_parquet_errors_name_the_column(tmp_path):
    table = pa.table({"a": [1.0, 2.0, 3.0], "s": ["x", "y", "z"], "t": [0, 1, 0]})
    pq.write_table(table, tmp_path / "t.parquet")
    path = tmp_path / "t.parquet"
    with pytest.raises(SourceError, match=r"column 'label' .* is not in t.parquet; its columns: "
                                          r"'a', 's', 't'"):
        ParquetSource(path, "label")
    with pytest.raises(SourceError, match=r"feature column 's' of t.parquet is not numeric"):
        ParquetSource(path, "t", features=["a", "s"])
    with pytest.raises(SourceError, match=r"'t' is both a target and a feature"):
        ParquetSource(path, "t", features=["a", "t"])
    assert ParquetSource(path, "t").feature_names == ["a"]  # 's' is left out
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 damaged")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        ParquetSource(tmp_path / "bad.parquet", "t")
    (tmp_path / "x.csv").write_text("a,t\n1,0\n")
    with pytest.raises(SourceError, match="unknown file type '.csv'"):
        open_source(tmp_path / "x.csv", "t")


def test_zarr_errors_name_the_argument(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(SourceError, match=r"path=.*empty.zarr.* not a readable zarr array"):
        ZarrSource(tmp_path / "empty.zarr", tmp_path / "y.npy")
