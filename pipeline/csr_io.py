"""A file's wide one-hot matrix (scipy CSR) in the app's files and records, without pickle.

The app keeps a user table with many categories as a CSR matrix (``pipeline.tabular``,
``dataset.sparse``). Wherever it writes a matrix (the DVC stage folders, the test predictions
of a run) or hashes one (the run's dataset digest), a CSR matrix goes as its three arrays,
``<name>.data``, ``<name>.indices``, ``<name>.indptr``, plus ``<name>.shape``: plain ``.npy``
arrays any reader rebuilds with ``scipy.sparse.csr_matrix((data, indices, indptr), shape)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PARTS = ("data", "indices", "indptr", "shape")


def is_csr(X: Any) -> bool:
    """True for a scipy.sparse matrix or array (checked without importing scipy)."""
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


def parts(name: str, X: Any) -> dict[str, np.ndarray]:
    """``{name: X}`` for a dense X; ``{name.data: ..., name.indices: ..., ...}`` for CSR."""
    if not is_csr(X):
        return {name: X}
    X = X.tocsr()
    return {f"{name}.data": X.data, f"{name}.indices": X.indices, f"{name}.indptr": X.indptr,
            f"{name}.shape": np.asarray(X.shape, dtype=np.int64)}


def joined(arrays: dict[str, np.ndarray], name: str) -> Any:
    """The matrix ``name`` from arrays that ``parts`` wrote (dense, or CSR rebuilt); KeyError
    when neither form is there."""
    if name in arrays:
        return arrays[name]
    import scipy.sparse as sp

    data, indices, indptr, shape = (arrays[f"{name}.{p}"] for p in PARTS)
    return sp.csr_matrix((data, indices, indptr), shape=tuple(int(s) for s in shape))


def has(arrays: dict[str, np.ndarray], name: str) -> bool:
    """Whether ``arrays`` hold the matrix ``name`` in either form."""
    return name in arrays or all(f"{name}.{p}" in arrays for p in PARTS)


def hash_into(h: Any, X: Any) -> None:
    """X's values into a hashlib object: a dense array's bytes; a CSR matrix's shape and its
    three arrays (so a dense and a sparse matrix never hash alike)."""
    if not is_csr(X):
        h.update(np.ascontiguousarray(X).tobytes())
        return
    X = X.tocsr()
    h.update(b"\0csr\0" + np.asarray(X.shape, dtype=np.int64).tobytes())
    for a in (X.indptr, X.indices, X.data):
        h.update(np.ascontiguousarray(a).tobytes())


def table_columns(X: Any, prep: Any) -> dict[str, np.ndarray]:
    """An encoded CSR matrix as one array per raw column (the dataset schema of a run): the
    numeric columns' values, and per categorical column the index of its category among
    ``prep.categories`` (-1: unseen or missing). Holds what X holds (each one-hot block has at
    most one 1 a row) in n x (raw columns) values instead of n x (encoded columns).

    ``prep``: the ``pipeline.tabular.Tabular`` that encoded X (numeric columns first).
    """
    X = X.tocsr()
    n, n_num = X.shape[0], len(prep.numeric)
    out = {name: X[:, j].toarray().ravel() for j, name in enumerate(prep.numeric)}
    start = n_num
    for col, cats in zip(prep.categorical, prep.categories, strict=True):
        block = X[:, start:start + len(cats)].tocsr()
        code = np.full(n, -1, dtype=np.int64)
        code[np.repeat(np.arange(n), np.diff(block.indptr))] = block.indices
        out[col] = code
        start += len(cats)
    return out
