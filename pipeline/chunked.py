"""Data on disk in row chunks: ``.npy`` files, folders of ``.npy`` shards, Parquet, zarr.

A :class:`ChunkedSource` knows the shape, dtype and names of its data and cuts its rows into
uniform chunks of ``chunk_rows`` rows (the last one shorter), the chunking of
``ArrayObjective(..., chunk_rows=chunk_rows)``, whatever the storage layout: a chunk that
straddles two shards or row groups reads from both. :meth:`ChunkedSource.loaders` gives one
zero-argument callable per chunk that returns ``(X_c, y_c)`` (X as stored, y raw as stored).
Loaders are ``functools.partial`` objects over module-level functions holding only paths, row
ranges and dtypes, never an open file: they pickle, so a Dask worker can call them
(``client.map(call, source.loaders())``) and read its chunk itself. Every error names the
argument at fault and the fix, in the style of :func:`pipeline.sources.read_table`.

``.npy`` data reach a loader's caller in one of two ways. ``loaders()`` copies each chunk with
explicit ``preadv`` calls (into a recycled buffer when given one): what a Dask worker holds
resident. ``loaders(mapped=True)``, what a streamed pass reads, gives each chunk as a view of a
memory map of that chunk's rows alone (:mod:`pipeline.chunk_map`), with no copy at all: the
kernel reads the page cache itself (a warm pass over a 0.5 GB file ran at 2.9-3.3 GB/s copying
and 4.7-10.8 GB/s mapped on this 2-core machine). A map's pages count toward the process's
resident set once touched (one ``np.load(mmap_mode='r')`` over a 512 MB file grew the RSS by
504 MB in a pass), so each chunk has its own map, unmapped as soon as its last view is
dropped: the resident pages are those of the chunks alive, as with copies.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Default chunk size for storage without natural row units (a .npy file, zarr multiples).
CHUNK_BYTES = 32 * 2**20

Loader = Callable[[], tuple[np.ndarray, np.ndarray]]


class SourceError(ValueError):
    """A chunked source cannot be read as asked: the message names the argument and the fix."""


def uniform_bounds(n: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of ``chunk_rows`` rows, the last one shorter: the chunking of
    ``ArrayObjective(..., chunk_rows=chunk_rows)``."""
    step = max(int(chunk_rows), 1)
    return [(lo, min(n, lo + step)) for lo in range(0, max(n, 1), step)]


def _natural_key(name: str) -> list:
    """Sort key putting ``part-2`` before ``part-10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _exists(path: Path, arg: str, what: str) -> Path:
    if not path.exists():
        raise SourceError(f"{arg}={str(path)!r}: no such file or folder; give the path of "
                          f"{what} (relative paths start at the current folder)")
    return path


# --------------------------------------------------------------------------- .npy reading
class NpyHeader:
    """Shape, dtype and data offset of one ``.npy`` file (read from its header only)."""

    def __init__(self, path: Path, arg: str):
        _exists(path, arg, "a .npy file")
        if path.is_dir():
            raise SourceError(f"{arg}={str(path)!r} is a folder; give a .npy file")
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read(fh)
                self.offset = fh.tell()
        except (ValueError, OSError) as err:
            why = " ".join(str(err).split())[:160]
            raise SourceError(f"{arg}={str(path)!r} is not a readable .npy file ({why}); "
                              "write it with numpy.save") from None
        if fortran and len(shape) > 1:
            raise SourceError(f"{arg}={str(path)!r} is stored in Fortran (column) order, so a "
                              "row range is not contiguous; save it C-ordered: "
                              "np.save(path, np.ascontiguousarray(X))")
        if dtype.hasobject:
            raise SourceError(f"{arg}={str(path)!r} holds Python objects (dtype {dtype}); "
                              "save numbers (or labels as a numeric/string dtype)")
        self.path, self.shape, self.dtype = str(path), tuple(shape), dtype
        expected = self.offset + int(np.prod(shape)) * dtype.itemsize
        if path.stat().st_size < expected:
            raise SourceError(f"{arg}={str(path)!r} is truncated ({path.stat().st_size} bytes, "
                              f"its header promises {expected}); write it again")

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1


def _pread_into(path: str, buf: np.ndarray, at: int) -> None:
    """Fill the C-contiguous ``buf`` with the bytes of ``path`` from offset ``at``."""
    view = buf.reshape(-1).view(np.uint8).data
    fd = os.open(path, os.O_RDONLY)
    try:
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], at + done)
            if got == 0:
                raise SourceError(f"{path!r} ended early (truncated while reading?)")
            done += got
    finally:
        os.close(fd)


def _out_rows(out: np.ndarray | None, rows: int, tail: tuple[int, ...],
              dtype: np.dtype) -> np.ndarray:
    """``out[:rows]`` when it fits (a reused buffer: no fresh pages to fault in), else a new
    array. Reading into fresh arrays ran at a third of the speed of reading into one buffer."""
    if (out is not None and out.dtype == dtype and out.shape[1:] == tail
            and out.shape[0] >= rows and out.flags.c_contiguous):
        return out[:rows]
    return np.empty((rows, *tail), dtype=dtype)


def read_npy_rows(path: str, offset: int, tail: tuple[int, ...], dtype: str,
                  lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``[lo, hi)`` of a C-ordered ``.npy`` array whose rows have shape ``tail`` (into
    ``out[:hi - lo]`` when given and of that dtype and row shape)."""
    X = _out_rows(out, hi - lo, tail, np.dtype(dtype))
    row_bytes = X.dtype.itemsize * int(np.prod(tail, dtype=np.int64))
    if X.size:
        _pread_into(path, X, offset + lo * row_bytes)
    return X


def read_npy_pieces(pieces: tuple, tail: tuple[int, ...], dtype: str,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Rows from several files: ``pieces`` holds ``(path, offset, lo, hi)`` per file."""
    if len(pieces) == 1:
        path, offset, lo, hi = pieces[0]
        return read_npy_rows(path, offset, tail, dtype, lo, hi, out=out)
    X = _out_rows(out, sum(hi - lo for *_, lo, hi in pieces), tail, np.dtype(dtype))
    at = 0
    for path, offset, lo, hi in pieces:
        read_npy_rows(path, offset, tail, dtype, lo, hi, out=X[at:at + hi - lo])
        at += hi - lo
    return X


def _npy_rows_sparse(path: str, offset: int, tail: tuple[int, ...], dtype: str,
                     rows: np.ndarray) -> np.ndarray:
    """The given sorted rows of one ``.npy`` file, one read per run of consecutive rows."""
    out = np.empty((rows.size, *tail), dtype=np.dtype(dtype))
    if not rows.size:
        return out
    row_bytes = out.dtype.itemsize * int(np.prod(tail, dtype=np.int64))
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, rows.size], strict=True):
        _pread_into(path, out[a:b], offset + int(rows[a]) * row_bytes)
    return out


def load_pair(x_read: Callable[..., np.ndarray], y_read: Callable[[], np.ndarray],
              out: np.ndarray | None = None):
    """``(x_read(out=out), y_read())``: one chunk's features and raw targets.

    Every loader takes an optional ``out``: a C-contiguous buffer of at least the chunk's rows
    and of the source's dtype that it may fill and return a view of (the streamed objective
    recycles a few such buffers); without it each call returns new arrays."""
    return x_read(out=out), y_read()


def call(loader: Callable[[], Any]) -> Any:
    """``loader()``: a module-level function to map over loaders (``client.map(call, ...)``)."""
    return loader()


# --------------------------------------------------------------------------- the sources
class ChunkedSource:
    """Rows of X and their targets on disk, in uniform chunks (subclasses say where).

    Attributes
    ----------
    path : str
        Where X is.
    n_samples, n_features : int
    dtype : numpy dtype of X as stored (fit converts each chunk to its ``dtype``).
    feature_names, target_names : list of str
    chunk_rows : int
        Rows per chunk (the last chunk is shorter).
    bounds : list of (lo, hi)
        The chunks' row ranges, in chunk order.
    """

    kind = "chunked"

    def __init__(self, path: str, n_samples: int, n_features: int, dtype: np.dtype,
                 feature_names: Sequence[str], target_names: Sequence[str],
                 chunk_rows: int | None, natural_rows: int):
        self.path, self.n_samples, self.n_features = path, int(n_samples), int(n_features)
        self.dtype = np.dtype(dtype)
        self.feature_names, self.target_names = list(feature_names), list(target_names)
        self.chunk_rows = _check_chunk_rows(chunk_rows, min(natural_rows, max(self.n_samples, 1)))
        self.bounds = uniform_bounds(self.n_samples, self.chunk_rows)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.path!r}, n_samples={self.n_samples}, "
                f"n_features={self.n_features}, dtype={self.dtype}, "
                f"chunk_rows={self.chunk_rows}, n_chunks={len(self.bounds)})")

    @property
    def nbytes(self) -> int:
        """Bytes of X as stored."""
        return self.n_samples * self.n_features * self.dtype.itemsize

    def loaders(self, mapped: bool = False) -> list[Loader]:
        """One picklable zero-argument callable per chunk, returning ``(X_c, y_c)``.

        ``mapped``: X of a ``.npy`` chunk comes as a view of a memory map of its rows
        (:func:`pipeline.chunk_map.map_npy_rows`: no copy, valid while the view lives), not
        a copy; the formats that decode (Parquet, zarr) and chunks over several shards copy
        anyway. For a pass that drops each chunk before it reads far ahead; a holder of
        chunks (a Dask worker) wants copies.
        """
        make = self._mapped_loader if mapped else self._loader
        return [make(lo, hi) for lo, hi in self.bounds]

    def target_loaders(self) -> list[Callable[[], np.ndarray]]:
        """One picklable callable per chunk returning its raw targets only (a cheap pass)."""
        return [self._target_loader(lo, hi) for lo, hi in self.bounds]

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``rows`` (indices in any order) of X and y, gathered chunk by chunk.

        Only the chunks holding requested rows are read, one at a time.
        """
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        if sorted_rows.size and (sorted_rows[0] < 0 or sorted_rows[-1] >= self.n_samples):
            raise IndexError(f"rows outside [0, {self.n_samples})")
        Xs, ys = self._take_sorted(sorted_rows)
        if np.any(order != np.arange(order.size)):
            inverse = np.empty_like(order)
            inverse[order] = np.arange(order.size)
            Xs, ys = Xs[inverse], ys[inverse]
        return Xs, ys

    def _take_sorted(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = np.array([lo for lo, _ in self.bounds])
        which = np.searchsorted(starts, rows, side="right") - 1
        X_parts, y_parts = [], []
        for c in np.unique(which):
            lo, hi = self.bounds[c]
            X_c, y_c = self._loader(lo, hi)()
            sel = rows[which == c] - lo
            X_parts.append(X_c[sel])
            y_parts.append(y_c[sel])
        if not X_parts:
            X_c, y_c = self._loader(0, 0)()
            return X_c, y_c
        return np.concatenate(X_parts), np.concatenate(y_parts)

    # Subclasses: the loaders of rows [lo, hi).
    def _loader(self, lo: int, hi: int) -> Loader:
        raise NotImplementedError

    def _mapped_loader(self, lo: int, hi: int) -> Loader:
        """The loader of rows [lo, hi) with X memory-mapped where the format allows it."""
        return self._loader(lo, hi)

    def _target_loader(self, lo: int, hi: int) -> Callable[[], np.ndarray]:
        raise NotImplementedError


def _check_chunk_rows(chunk_rows: Any, natural: int) -> int:
    if chunk_rows is None:
        return max(int(natural), 1)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)):
        raise TypeError(f"chunk_rows={chunk_rows!r} must be an integer (rows per chunk)")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows} must be >= 1")
    return int(chunk_rows)


def _rows_for_bytes(row_bytes: int, unit: int = 1) -> int:
    """A multiple of ``unit`` rows near CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // max(row_bytes * unit, 1)) * unit


def _feature_names(k: int) -> list[str]:
    return [f"x{j}" for j in range(k)]


def _check_target_rows(target: str, rows: int, n: int, x_arg: str) -> None:
    if rows != n:
        raise SourceError(f"target={target!r} has {rows} rows but X ({x_arg}) has {n}; they "
                          "must match (one target per row of X, in the same order)")


class _TargetFile:
    """A companion target file (a .npy, or a zarr array) covering all rows."""

    def __init__(self, target: str | os.PathLike, n: int, x_arg: str):
        path = Path(target).expanduser()
        self.path = str(path)
        if path.suffix.lower() == ".npy" or path.is_file():
            self.head: NpyHeader | None = NpyHeader(path, "target")
            shape = self.head.shape
        else:
            self.head = None
            shape = _open_zarr(path, "target").shape
        if len(shape) not in (1, 2):
            raise SourceError(f"target={self.path!r} has shape {shape}; targets are (n,) or "
                              "(n, m)")
        _check_target_rows(self.path, shape[0], n, x_arg)
        self.names = ["y"] if len(shape) == 1 else [f"y{c}" for c in range(shape[1])]

    def read(self, lo: int, hi: int) -> Callable[[], np.ndarray]:
        """A picklable reader of rows [lo, hi)."""
        h = self.head
        if h is None:
            return functools.partial(read_zarr_rows, self.path, lo, hi)
        return functools.partial(read_npy_rows, h.path, h.offset, h.shape[1:], h.dtype.str,
                                 lo, hi)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The sorted rows ``rows``."""
        h = self.head
        if h is None:
            return np.asarray(_zarr_array(self.path).get_orthogonal_selection(
                (rows,) + (slice(None),) * (_zarr_array(self.path).ndim - 1)))
        return _npy_rows_sparse(h.path, h.offset, h.shape[1:], h.dtype.str, rows)


class NpySource(ChunkedSource):
    """X in one ``.npy`` file (n, k), C-ordered; targets in a companion file.

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file of X.
    target : str or Path
        A ``.npy`` file (or zarr array) of the targets, (n,) or (n, m), same row order.
    chunk_rows : int, optional
        Rows per chunk; default about 32 MiB of X per chunk.
    feature_names : list of str, optional
        Default ``x0, x1, ...``.
    """

    kind = "npy"

    def __init__(self, path, target, *, chunk_rows: int | None = None,
                 feature_names: Sequence[str] | None = None):
        head = NpyHeader(Path(path).expanduser(), "path")
        if len(head.shape) != 2:
            raise SourceError(f"path={head.path!r} has shape {head.shape}; X must be 2-D "
                              "(n_samples, n_features)")
        n, k = head.shape
        self._head = head
        self._target = _TargetFile(target, n, f"path={head.path!r}")
        names = list(feature_names) if feature_names is not None else _feature_names(k)
        super().__init__(head.path, n, k, head.dtype, names, self._target.names, chunk_rows,
                         _rows_for_bytes(k * head.dtype.itemsize))

    def _x_reader(self, lo: int, hi: int, mapped: bool = False):
        from .chunk_map import map_npy_rows

        h = self._head
        return functools.partial(map_npy_rows if mapped else read_npy_rows, h.path, h.offset,
                                 h.shape[1:], h.dtype.str, lo, hi)

    def _loader(self, lo: int, hi: int) -> Loader:
        return functools.partial(load_pair, self._x_reader(lo, hi), self._target.read(lo, hi))

    def _mapped_loader(self, lo: int, hi: int) -> Loader:
        return functools.partial(load_pair, self._x_reader(lo, hi, True),
                                 self._target.read(lo, hi))

    def _target_loader(self, lo: int, hi: int):
        return self._target.read(lo, hi)

    def _take_sorted(self, rows):
        """Sparse samples (most chunks barely touched) read their rows alone."""
        if rows.size * 16 > self.n_samples:
            return super()._take_sorted(rows)
        h = self._head
        X = _npy_rows_sparse(h.path, h.offset, h.shape[1:], h.dtype.str, rows)
        return X, self._target.take(rows)


def _pieces(starts: np.ndarray, files: list[tuple[str, int]], lo: int, hi: int) -> tuple:
    """``(path, offset, lo_in_file, hi_in_file)`` for each file overlapping rows [lo, hi);
    ``starts`` holds each file's first row and, last, the total."""
    out = []
    first = max(int(np.searchsorted(starts, lo, side="right")) - 1, 0)
    for f in range(first, len(files)):
        a, b = int(starts[f]), int(starts[f + 1])
        if a >= hi:
            break
        if b > lo:
            out.append((files[f][0], files[f][1], max(lo, a) - a, min(hi, b) - a))
    return tuple(out) or ((files[0][0], files[0][1], 0, 0),)


# --------------------------------------------------------------------------- zarr
def _zarr_array(path: str):
    import zarr  # lazy: only zarr sources need it

    return zarr.open_array(path, mode="r")


def _open_zarr(path: Path, arg: str):
    _exists(path, arg, "a zarr array (a folder with zarr.json or .zarray)")
    try:
        return _zarr_array(str(path))
    except ImportError:
        raise SourceError(f"{arg}={str(path)!r} is a zarr array but zarr is not installed; "
                          "install the zarr extra") from None
    except Exception as err:  # zarr's verdict on the folder, whatever its class
        why = " ".join(str(err).split())[:160] or type(err).__name__
        raise SourceError(f"{arg}={str(path)!r} is not a readable zarr array ({why}); give "
                          "the array's folder (e.g. data.zarr/X), not its group") from None


def read_zarr_rows(path: str, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``[lo, hi)`` of a zarr array, C-contiguous (zarr decodes into new arrays anyway:
    ``out`` is not used)."""
    return np.ascontiguousarray(_zarr_array(path)[lo:hi])


def open_source(path, target, **options) -> ChunkedSource:
    """The source for ``path`` by its kind: a ``.npy`` file, a folder of ``.npy`` shards, a
    ``.parquet`` file or folder of them, or a zarr array (a folder with ``zarr.json`` or
    ``.zarray``). ``options`` go to the source's constructor."""
    from .sources import PARQUET

    where = _exists(Path(path).expanduser(), "path",
                    "a .npy file, a folder of .npy shards, Parquet or a zarr array")
    if where.is_file():
        if where.suffix.lower() == ".npy":
            return NpySource(where, target, **options)
        if where.suffix.lower() in PARQUET:
            return ParquetSource(where, target, **options)
        raise SourceError(f"path={str(where)!r}: unknown file type {where.suffix!r}; allowed: "
                          ".npy, .parquet (or a folder of shards, or a zarr array)")
    if (where / "zarr.json").exists() or (where / ".zarray").exists():
        return ZarrSource(where, target, **options)
    if any(where.glob("*.npy")):
        return NpyShardsSource(where, target, **options)
    return ParquetSource(where, target, **options)


from .chunked_formats import (  # noqa: E402  (they build on the above)
    NpyShardsSource,
    ParquetSource,
    ZarrSource,
)

__all__ = ["CHUNK_BYTES", "ChunkedSource", "NpyShardsSource", "NpySource", "ParquetSource",
           "SourceError", "ZarrSource", "call", "load_pair", "open_source", "uniform_bounds"]
