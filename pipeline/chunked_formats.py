"""Sources of several files or columnar formats: ``.npy`` shards, zarr arrays, Parquet.

Part of :mod:`pipeline.chunked` (which re-exports the classes): the same uniform chunks and
picklable loaders as :class:`pipeline.chunked.NpySource`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .chunk_map import map_npy_pieces
from .chunked import (
    ChunkedSource,
    Loader,
    NpyHeader,
    SourceError,
    _exists,
    _feature_names,
    _natural_key,
    _open_zarr,
    _out_rows,
    _pieces,
    _rows_for_bytes,
    _TargetFile,
    load_pair,
    read_npy_pieces,
    read_zarr_rows,
)


# --------------------------------------------------------------------------- .npy shards
def _shard_headers(folder: Path, pattern: str, arg: str) -> list[NpyHeader]:
    _exists(folder, arg, "a folder of .npy shards")
    if not folder.is_dir():
        raise SourceError(f"{arg}={str(folder)!r} is a file; give the folder of .npy shards "
                          "(or use NpySource for one file)")
    files = sorted((p for p in folder.glob(pattern) if p.is_file()),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise SourceError(f"{arg}={str(folder)!r} holds no shard matching {pattern!r}; "
                          "write the shards there with numpy.save")
    return [NpyHeader(p, arg) for p in files]


def _check_shards(heads: list[NpyHeader], arg: str, ndims: tuple[int, ...]) -> None:
    """Every shard with the first one's dtype and row shape ('ragged' shards are errors)."""
    first = heads[0]
    for h in heads:
        if len(h.shape) not in ndims:
            raise SourceError(f"shard {Path(h.path).name!r} in {arg} has shape {h.shape}; "
                              f"every shard must be {' or '.join(f'{d}-D' for d in ndims)}")
        if h.shape[1:] != first.shape[1:] or h.dtype != first.dtype:
            raise SourceError(
                f"ragged shards in {arg}: {Path(h.path).name!r} has rows of shape "
                f"{h.shape[1:]} and dtype {h.dtype}, but {Path(first.path).name!r} has "
                f"{first.shape[1:]} and {first.dtype}; write every shard with the same "
                "columns and dtype")


class NpyShardsSource(ChunkedSource):
    """X in a folder of ``.npy`` shards (each (n_i, k), name order), targets alongside.

    Parameters
    ----------
    path : folder of X shards (files matching ``pattern``, in natural name order:
        ``part-2`` before ``part-10``).
    target : a ``.npy`` file of all targets, or a folder of target shards (matching
        ``target_pattern``), one per X shard with the same rows.
    chunk_rows : rows per chunk; default the first shard's rows (equal shards: one chunk per
        shard). Chunks are uniform row ranges; one that straddles shards reads from both.
    """

    kind = "npy_shards"

    def __init__(self, path, target, *, pattern: str = "*.npy",
                 target_pattern: str | None = None, chunk_rows: int | None = None,
                 feature_names: Sequence[str] | None = None):
        folder = Path(path).expanduser()
        heads = _shard_headers(folder, pattern, f"path={str(folder)!r}")
        _check_shards(heads, f"path={str(folder)!r}", (2,))
        self._files = [(h.path, h.offset) for h in heads]
        self._tail, self._dtype = heads[0].shape[1:], heads[0].dtype
        self._starts = np.cumsum([0] + [h.rows for h in heads])
        n, k = int(self._starts[-1]), heads[0].shape[1]
        tpath = Path(target).expanduser()
        if tpath.is_dir():
            theads = _shard_headers(tpath, target_pattern or pattern, "target")
            _check_shards(theads, f"target={str(tpath)!r}", (1, 2))
            if [h.rows for h in theads] != [h.rows for h in heads]:
                raise SourceError(f"target={str(tpath)!r} has {len(theads)} shards of rows "
                                  f"{[h.rows for h in theads][:8]} but the X shards have "
                                  f"{[h.rows for h in heads][:8]}; give one target shard per "
                                  "X shard with the same rows")
            self._tfiles = [(h.path, h.offset) for h in theads]
            self._ttail, self._tdtype = theads[0].shape[1:], theads[0].dtype
            self._tfile: _TargetFile | None = None
            tnames = ["y"] if not self._ttail else [f"y{c}" for c in range(self._ttail[0])]
        else:
            self._tfile = _TargetFile(tpath, n, f"path={str(folder)!r}")
            tnames = self._tfile.names
        names = list(feature_names) if feature_names is not None else _feature_names(k)
        super().__init__(str(folder), n, k, self._dtype, names, tnames, chunk_rows,
                         heads[0].rows)

    def _loader(self, lo: int, hi: int, mapped: bool = False) -> Loader:
        x = functools.partial(map_npy_pieces if mapped else read_npy_pieces,
                              _pieces(self._starts, self._files, lo, hi), self._tail,
                              self._dtype.str)
        return functools.partial(load_pair, x, self._target_loader(lo, hi))

    def _mapped_loader(self, lo: int, hi: int) -> Loader:
        return self._loader(lo, hi, mapped=True)

    def _target_loader(self, lo: int, hi: int):
        if self._tfile is not None:
            return self._tfile.read(lo, hi)
        return functools.partial(read_npy_pieces, _pieces(self._starts, self._tfiles, lo, hi),
                                 self._ttail, self._tdtype.str)


class ZarrSource(ChunkedSource):
    """X as a 2-D zarr array; targets as a zarr array or a ``.npy`` file.

    ``chunk_rows`` defaults to the multiple of the array's own row chunking nearest 32 MiB of X
    (a chunk then reads whole zarr chunks only).
    """

    kind = "zarr"

    def __init__(self, path, target, *, chunk_rows: int | None = None,
                 feature_names: Sequence[str] | None = None):
        where = Path(path).expanduser()
        arr = _open_zarr(where, "path")
        if arr.ndim != 2:
            raise SourceError(f"path={str(where)!r} has shape {arr.shape}; X must be 2-D")
        if arr.dtype.kind not in "biuf":
            raise SourceError(f"path={str(where)!r} has dtype {arr.dtype}; X must be numbers")
        n, k = arr.shape
        self._target = _TargetFile(target, n, f"path={str(where)!r}")
        names = list(feature_names) if feature_names is not None else _feature_names(k)
        natural = _rows_for_bytes(k * arr.dtype.itemsize, int(arr.chunks[0]))
        super().__init__(str(where), n, k, arr.dtype, names, self._target.names, chunk_rows,
                         natural)

    def _loader(self, lo: int, hi: int) -> Loader:
        return functools.partial(load_pair, functools.partial(read_zarr_rows, self.path, lo, hi),
                                 self._target.read(lo, hi))

    def _target_loader(self, lo: int, hi: int):
        return self._target.read(lo, hi)


# --------------------------------------------------------------------------- Parquet
def _column_numpy(table, name: str) -> np.ndarray:
    """One column as numpy; nulls become NaN (the finiteness checks then name their rows),
    labels stay as they are (strings as objects, their nulls None)."""
    import pyarrow as pa

    col = table.column(name)
    if col.null_count and (pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
        col = col.cast(pa.float64())
    return col.to_numpy()


def _read_parquet(pieces: tuple, features: tuple[str, ...], targets: tuple[str, ...],
                  dtype: str, out: np.ndarray | None = None):
    """X (into ``out`` when it fits) and the list of y parts of the rows ``pieces`` names.

    One column at a time into a (k, rows) block, then one transposing copy into X: writing
    columns into a row-major X directly (strided) ran 6x slower, and reading all columns at
    once held twice the memory (21 MB against 12 MB for 8 MB chunks) at the same speed.
    """
    import pyarrow.parquet as pq

    rows = sum(hi - lo for *_, lo, hi in pieces)
    X = _out_rows(out, rows, (len(features),), np.dtype(dtype))
    y_parts, at = [], 0
    for file, groups, lo, hi in pieces:
        pf = pq.ParquetFile(file, pre_buffer=False)

        def read(columns, pf=pf, groups=groups, lo=lo, hi=hi):
            return pf.read_row_groups(list(groups), columns=columns,
                                      use_threads=False).slice(lo, hi - lo)

        if features:
            block = np.empty((len(features), hi - lo), dtype=X.dtype)
            for j, name in enumerate(features):
                block[j] = _column_numpy(read([name]), name)
            X[at:at + hi - lo] = block.T
            del block
        table = read(list(targets))
        ys = [_column_numpy(table, t) for t in targets]
        y_parts.append(ys[0] if len(ys) == 1 else np.column_stack(ys))
        at += hi - lo
    return X, y_parts


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def read_parquet_rows(pieces: tuple, features: tuple[str, ...], targets: tuple[str, ...],
                      dtype: str, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a Parquet file or dataset as ``(X, y)``: ``pieces`` holds
    ``(file, row_groups, lo, hi)`` per file (the rows [lo, hi) of those row groups, read
    together). Arrow's memory pool keeps its pages for the next chunk (releasing them after
    each chunk halved the read speed); without ``pre_buffer`` (each row group's bytes read
    at once and kept) it held 24 MB for 8 MB chunks instead of 53 MB, as fast."""
    X, y_parts = _read_parquet(pieces, features, targets, dtype, out)
    return X, _joined(y_parts)


def read_parquet_targets(pieces: tuple, targets: tuple[str, ...]) -> np.ndarray:
    """The target columns alone of the rows ``pieces`` names."""
    return _joined(_read_parquet(pieces, (), targets, "float64")[1])


def _parquet_files(path: Path) -> list[Path]:
    from .sources import PARQUET

    _exists(path, "path", "a .parquet file or a folder of them")
    if path.is_file():
        return [path]
    files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in PARQUET),
                   key=lambda p: _natural_key(str(p.relative_to(path))))
    if not files:
        raise SourceError(f"path={str(path)!r} holds no .parquet files; give a .parquet file "
                          "or a folder of them")
    return files


def _parquet_meta(file: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(file).metadata
    except Exception as err:  # pyarrow's verdict on the user's bytes, whatever its class
        why = " ".join(str(err).split())[:160] or type(err).__name__
        raise SourceError(f"path={str(file)!r} is not a readable Parquet file ({why}); check "
                          "that it is not damaged or truncated") from None


def _numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _parquet_columns(schema, file: Path, target: list[str],
                     features: Sequence[str] | None) -> list[str]:
    """The feature columns: ``features`` (each checked) or every other numeric column."""
    columns = list(schema.names)
    for col in target + list(features or []):
        if col not in columns:
            shown = ", ".join(repr(c[:40]) for c in columns[:20])
            more = f" and {len(columns) - 20} more" if len(columns) > 20 else ""
            raise SourceError(f"column {col!r} (target/features) is not in {file.name}; its "
                              f"columns: {shown}{more}")
    names = list(features) if features else [
        c for c in columns if c not in target and _numeric(schema.field(c).type)]
    both = [c for c in names if c in target]
    if both:
        raise SourceError(f"column {both[0]!r} is both a target and a feature (features); a "
                          "model must not see its target: drop it from features")
    if not names:
        raise SourceError(f"path={str(file)!r} has no numeric feature columns besides the "
                          f"target {', '.join(map(repr, target))}")
    for c in names:
        if not _numeric(schema.field(c).type):
            raise SourceError(f"feature column {c!r} of {file.name} is not numeric (type "
                              f"{schema.field(c).type}); allowed: numeric columns (encode or "
                              "drop it first)")
    return names


class ParquetSource(ChunkedSource):
    """A Parquet file or a folder of them (a dataset, files in name order), read by row group.

    Parameters
    ----------
    path : a ``.parquet`` file or a folder holding ``.parquet`` files with the same columns.
    target : the target column's name (or a list of names: multilabel, several outputs).
    features : the feature columns; default every other numeric column (integers, floats and
        booleans; other columns are left out).
    chunk_rows : rows per chunk; default the first row group's rows. With equal row groups
        each chunk reads one group. Uneven groups still give uniform chunks: a chunk reads
        every group it overlaps and slices it, so a group that straddles two chunks is read
        twice (write equal row groups, ``row_group_size=``, to read each once).
    """

    kind = "parquet"

    def __init__(self, path, target: str | Sequence[str], *,
                 features: Sequence[str] | None = None, chunk_rows: int | None = None):
        where = Path(path).expanduser()
        files = _parquet_files(where)
        targets = [target] if isinstance(target, str) else list(target)
        metas = [_parquet_meta(f) for f in files]
        schema = metas[0].schema.to_arrow_schema()
        names = _parquet_columns(schema, files[0], targets, features)
        for f, meta in zip(files[1:], metas[1:], strict=True):
            other = meta.schema.to_arrow_schema()
            for c in names + targets:
                if c not in other.names or other.field(c).type != schema.field(c).type:
                    raise SourceError(f"{f.name} in path={str(where)!r} lacks column {c!r} or "
                                      f"stores it as another type than {files[0].name}; "
                                      "every file needs the same columns")
        self._groups = [(str(f), g, meta.row_group(g).num_rows)
                        for f, meta in zip(files, metas, strict=True)
                        for g in range(meta.num_row_groups)]
        self._starts = np.cumsum([0] + [r for _, _, r in self._groups])
        self._features, self._targets = tuple(names), tuple(targets)
        dtype = np.float32 if all(schema.field(c).type == "float" for c in names) \
            else np.float64
        first = next((r for _, _, r in self._groups if r), 1)
        super().__init__(str(where), int(self._starts[-1]), len(names), np.dtype(dtype), names,
                         targets, chunk_rows, first)

    def _pieces(self, lo: int, hi: int) -> tuple:
        """Per file: the row groups overlapping [lo, hi) and the rows of them to keep."""
        by_file: dict[str, list] = {}
        for file, group, a, b in _pieces(self._starts, [(f, g) for f, g, _ in self._groups],
                                         lo, hi):
            start = int(self._starts[self._index(file, group)])
            by_file.setdefault(file, []).append((group, start + a, start + b, start))
        out = []
        for file, parts in by_file.items():
            base = parts[0][3]
            out.append((file, tuple(g for g, *_ in parts), parts[0][1] - base, parts[-1][2] - base))
        return tuple(out)

    def _index(self, file: str, group: int) -> int:
        return self._group_index[(file, group)]

    @functools.cached_property
    def _group_index(self) -> dict[tuple[str, int], int]:
        return {(f, g): i for i, (f, g, _) in enumerate(self._groups)}

    def _loader(self, lo: int, hi: int) -> Loader:
        return functools.partial(read_parquet_rows, self._pieces(lo, hi), self._features,
                                 self._targets, self.dtype.str)

    def _target_loader(self, lo: int, hi: int):
        return functools.partial(read_parquet_targets, self._pieces(lo, hi), self._targets)
