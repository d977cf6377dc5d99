"""Chunks of ``.npy`` files as views of memory maps: a streamed pass reads the page cache itself.

Part of :mod:`pipeline.chunked` (``ChunkedSource.loaders(mapped=True)``). Each chunk gets a map of
its own rows, populated by the thread that makes it (the prefetching reader) and unmapped when its
last view is dropped, so the process's resident pages stay those of the chunks alive.
"""

from __future__ import annotations

import errno
import mmap
import os

import numpy as np

from .chunked import SourceError, read_npy_pieces

# Linux >= 5.14: fault a mapping's pages in now (reading them from disk if need be), not when
# the kernel first touches them; older kernels refuse it (EINVAL) and get MADV_WILLNEED.
_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)


def map_npy_rows(path: str, offset: int, tail: tuple[int, ...], dtype: str, lo: int, hi: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``[lo, hi)`` of a C-ordered ``.npy`` array as a view of a memory map of those rows
    alone: no copy, the caller reads the page cache. ``out`` is not used.

    The map is populated here (its pages read from disk if they are not cached, and mapped),
    so a reading thread that calls this does the waiting for the disk and the page faults, not
    the kernel that reads the chunk next. It is unmapped when the last view of it is dropped.
    It is private (copy on write), so the array is writable to the same compiled kernels as a
    copy; nothing writes to it (a write would copy that page, never touch the file).
    """
    dt = np.dtype(dtype)
    row_bytes = dt.itemsize * int(np.prod(tail, dtype=np.int64))
    start, stop = offset + lo * row_bytes, offset + hi * row_bytes
    if hi <= lo or row_bytes == 0:
        return np.empty((max(hi - lo, 0), *tail), dtype=dt)
    base = start - start % mmap.ALLOCATIONGRANULARITY
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < stop:
            raise SourceError(f"{path!r} ended early (truncated while reading?)")
        mm = mmap.mmap(fh.fileno(), stop - base, access=mmap.ACCESS_COPY, offset=base)
    try:
        mm.madvise(_POPULATE_READ)
    except OSError as err:
        if err.errno != errno.EINVAL:  # EFAULT: the file shrank under the map
            mm.close()
            raise SourceError(f"{path!r} could not be read ({err.strerror}; truncated while "
                              "reading?)") from None
        mm.madvise(mmap.MADV_WILLNEED)  # an older kernel: read ahead, fault in later
    return np.frombuffer(mm, dtype=dt, count=(hi - lo) * (row_bytes // dt.itemsize),
                         offset=start - base).reshape(hi - lo, *tail)


def map_npy_pieces(pieces: tuple, tail: tuple[int, ...], dtype: str,
                   out: np.ndarray | None = None) -> np.ndarray:
    """:func:`map_npy_rows` of a chunk within one file; a chunk over several files (one that
    straddles shards) is copied, as :func:`read_npy_pieces` does."""
    if len(pieces) == 1:
        path, offset, lo, hi = pieces[0]
        return map_npy_rows(path, offset, tail, dtype, lo, hi)
    return read_npy_pieces(pieces, tail, dtype, out=out)
