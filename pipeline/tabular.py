"""A user table's categorical columns and missing values as the numeric matrix the core fits.

Learnt on the training split only, by scikit-learn: ``SimpleImputer`` gives the fill values
(``dataset.missing``: mean or median for numeric columns, the most frequent value for
categories), ``OneHotEncoder(handle_unknown="ignore")`` the categories and the encoding. What
was learnt is kept as plain arrays (``arrays()``, written into the model's ``.npz``), which the
numpy-only pyfunc reads to repeat the encoding on the raw table it is given.

The encoded matrix: the numeric columns in the file's order, then one 0/1 column per
(categorical column, category), categories in sorted text order, named ``column=category``.
Category values are compared as text (``str(value)``: the integer 5 and the text "5" are one
category). An unseen category, or a missing one when nothing fills it, is a row of zeros in
its column's block, and counted.

Layout (``dataset.sparse``): a wide one-hot block (more than ``SPARSE_ONEHOT_AT`` columns
with ``auto``, or always with ``true``) makes the encoded matrix a CSR matrix; the numeric
columns are then stored columns of it (the scaler still centres them: they are not sparse to
begin with) and the one-hot columns stay 0/1, so nothing is densified. A dense layout keeps at
most ``dataset.max_onehot`` one-hot columns (rows x columns floats in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PREFIX = "prep_"  # the npz keys of a Tabular (the pyfunc looks for them)
SPARSE_ONEHOT_AT = 256  # dataset.sparse=auto: a CSR matrix above this many one-hot columns


def as_text(col: pd.Series) -> np.ndarray:
    """A categorical column as an object array of ``str(value)``, missing values as NaN (the
    pyfunc has the same function: both sides must make the same text)."""
    miss = pd.isna(col).to_numpy()
    out = np.array([str(v) for v in col.to_numpy(dtype=object)], dtype=object)
    out[miss] = np.nan
    return out


def numeric_block(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``frame[columns]`` as float64 (n, k); missing values (NaN, None, pd.NA) as NaN."""
    if not columns:
        return np.zeros((len(frame), 0))
    return frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)


def missing_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Missing values per column (only the columns that have some), in column order."""
    counts = frame.isna().sum()
    return {str(c): int(n) for c, n in counts.items() if n}


def missing_message(counts: dict[str, int], n_rows: int) -> str:
    """The ``dataset.missing=error`` message: every column with missing values and its count."""
    shown = ", ".join(f"{c!r} ({n} of {n_rows} rows)" for c, n in list(counts.items())[:10])
    more = f" and {len(counts) - 10} more columns" if len(counts) > 10 else ""
    return (f"missing values (NaN or empty cells) in feature columns {shown}{more}; set "
            "dataset.missing=mean or median (numeric columns; categories take their most "
            "frequent value) or most_frequent to fill them with training-split statistics, "
            "or drop those rows")


@dataclass
class Encoded:
    """``Tabular.transform``'s result: the matrix, unseen categories per column, fills."""

    X: Any  # (n, n_encoded) float64: an ndarray, or a scipy CSR matrix (``Tabular.sparse``)
    unseen: dict[str, int]
    filled: int


@dataclass
class Tabular:
    """What was learnt on the training split; ``transform`` applies it to any table."""

    inputs: list[str]  # the raw feature columns, in the file's order
    numeric: list[str]
    categorical: list[str]
    categories: list[np.ndarray]  # per categorical column: its categories (str, sorted)
    num_fill: np.ndarray  # (len(numeric),) fill values; NaN: none (dataset.missing=error)
    cat_fill: list[str | None]  # per categorical column; None: none
    missing: str = "error"
    sparse: bool = False  # the encoded matrix is a scipy CSR matrix
    _encoder: Any = field(default=None, repr=False, compare=False)

    @property
    def names(self) -> list[str]:
        """Names of the encoded columns: numeric ones, then ``column=category``."""
        return self.numeric + [f"{c}={v}" for c, cats in zip(self.categorical, self.categories,
                                                             strict=True) for v in cats]

    @property
    def onehot(self) -> np.ndarray:
        """(n_encoded,) bool: True for a one-hot column (left unscaled by the scaler)."""
        n_hot = sum(len(c) for c in self.categories)
        return np.r_[np.zeros(len(self.numeric), bool), np.ones(n_hot, bool)]

    def encoder(self) -> Any:
        """The fitted ``OneHotEncoder`` (rebuilt from ``categories`` after ``from_arrays``)."""
        if self._encoder is None:
            from sklearn.preprocessing import OneHotEncoder

            cats = [np.asarray(c, dtype=object) for c in self.categories]
            enc = OneHotEncoder(categories=cats, handle_unknown="ignore", dtype=np.float64)
            self._encoder = enc.fit(np.array([[c[0] for c in cats]], dtype=object))
        return self._encoder

    def transform(self, frame: pd.DataFrame) -> Encoded:
        """The encoded (n, n_encoded) float64 matrix of ``frame`` (raw columns by name): dense,
        or CSR when ``sparse``."""
        blocks, filled, unseen = [], 0, {}
        if self.numeric:
            Xn = numeric_block(frame, self.numeric)
            fill = np.isnan(Xn) & ~np.isnan(self.num_fill)
            filled += int(fill.sum())
            blocks.append(np.where(fill, self.num_fill, Xn))
        if self.categorical:
            T = np.column_stack([as_text(frame[c]) for c in self.categorical])
            for j, value in enumerate(self.cat_fill):
                miss = pd.isna(T[:, j])
                if value is not None and miss.any():
                    T[miss, j] = value
                    filled += int(miss.sum())
            B = self.encoder().transform(T).tocsr()
            start = 0
            for c, cats in zip(self.categorical, self.categories, strict=True):
                hits = np.diff(B[:, start:start + len(cats)].indptr)
                unseen[c] = int((hits == 0).sum())
                start += len(cats)
            blocks.append(B if self.sparse else B.toarray())
        if self.sparse:
            import scipy.sparse as sp

            X = sp.hstack([sp.csr_matrix(b) for b in blocks], format="csr", dtype=np.float64)
            X.sort_indices()
            return Encoded(X, unseen, filled)
        return Encoded(np.hstack(blocks), unseen, filled)

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no pickle) under ``prep_*`` keys: the model's npz, or a stage's files."""
        sizes = [len(c) for c in self.categories]
        return {f"{PREFIX}{k}": v for k, v in {
            "inputs": np.array(self.inputs, dtype=str),
            "numeric": np.array(self.numeric, dtype=str),
            "categorical": np.array(self.categorical, dtype=str),
            "categories": np.array([v for c in self.categories for v in c], dtype=str),
            "offsets": np.r_[0, np.cumsum(sizes)].astype(np.int64),
            "num_fill": np.asarray(self.num_fill, dtype=np.float64),
            "cat_fill": np.array([v or "" for v in self.cat_fill], dtype=str),
            "cat_has_fill": np.array([v is not None for v in self.cat_fill], dtype=bool),
            "missing": np.array(self.missing),
            "sparse": np.array(self.sparse)}.items()}

    @classmethod
    def from_arrays(cls, p: dict[str, np.ndarray]) -> Tabular:
        """The ``Tabular`` whose ``arrays()`` are ``p`` (extra keys ignored)."""
        def names(key: str) -> list[str]:
            return [str(v) for v in p[PREFIX + key]]

        off, flat = p[PREFIX + "offsets"], names("categories")
        has = p[PREFIX + "cat_has_fill"]
        return cls(inputs=names("inputs"), numeric=names("numeric"),
                   categorical=names("categorical"),
                   categories=[np.array(flat[a:b], dtype=str) for a, b in zip(off[:-1], off[1:],
                                                                             strict=True)],
                   num_fill=np.asarray(p[PREFIX + "num_fill"], dtype=np.float64),
                   cat_fill=[str(v) if h else None for v, h in zip(p[PREFIX + "cat_fill"], has,
                                                                  strict=True)],
                   missing=str(p[PREFIX + "missing"]),
                   sparse=bool(p[PREFIX + "sparse"]) if PREFIX + "sparse" in p else False)

    def add_to_npz(self, path: Path) -> Path:
        """Write ``arrays()`` into the model's ``.npz`` next to its weights and scaler."""
        with np.load(path, allow_pickle=False) as npz:
            kept = {k: npz[k] for k in npz.files if not k.startswith(PREFIX)}
        arrays: dict[str, Any] = {**kept, **self.arrays()}
        np.savez(path, **arrays)
        return path


def fit(frame: pd.DataFrame, categorical: list[str], missing: str, max_onehot: int,
        error: type[Exception], sparse: bool | str = False) -> Tabular:
    """Learn fill values and categories on the training split ``frame`` (its feature columns).

    ``sparse``: True, False or ``"auto"`` (``dataset.sparse``; auto: CSR above
    ``SPARSE_ONEHOT_AT`` one-hot columns). Raises ``error`` for a column with no value at all
    on the training split (nothing to fill it with) and, in the dense layout, for more one-hot
    columns than ``max_onehot``.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    inputs = [str(c) for c in frame.columns]
    numeric = [c for c in inputs if c not in categorical]
    cats = [c for c in inputs if c in categorical]
    empty = [c for c in inputs if frame[c].isna().all()]
    if empty and missing != "error":
        raise error(f"feature column {empty[0]!r} has no value in the training split "
                    f"({len(frame)} rows): nothing to fill it with; drop it (dataset.features)")
    num_fill = np.full(len(numeric), np.nan)
    if numeric and missing != "error":
        imp = SimpleImputer(strategy=missing).fit(numeric_block(frame, numeric))
        num_fill = np.asarray(imp.statistics_, dtype=np.float64)
    cat_fill: list[str | None] = [None] * len(cats)
    categories: list[np.ndarray] = []
    encoder = None
    if cats:
        T = np.column_stack([as_text(frame[c]) for c in cats])
        if missing != "error":
            imp = SimpleImputer(strategy="most_frequent", missing_values=np.nan).fit(T)
            cat_fill = [str(v) for v in imp.statistics_]
            T = imp.transform(T)
        encoder = OneHotEncoder(handle_unknown="ignore", dtype=np.float64).fit(T)
        categories = [np.asarray(c, dtype=str) for c in encoder.categories_]
    width = sum(len(c) for c in categories)
    layout = bool(cats) and (sparse is True or (sparse == "auto" and width > SPARSE_ONEHOT_AT))
    if width > max_onehot and not layout:
        top = sorted(zip(cats, categories, strict=True), key=lambda t: -len(t[1]))[:3]
        shown = ", ".join(f"{c!r} ({len(v)} categories)" for c, v in top)
        raise error(f"the categorical columns make {width} one-hot columns on the "
                    f"training split, more than dataset.max_onehot={max_onehot} (with "
                    f"dataset.sparse={_said(sparse)} the app keeps them dense): {shown}; set "
                    "dataset.sparse=true (or auto) to keep them in a sparse matrix, drop or "
                    "bucket such a column, or raise dataset.max_onehot")
    return Tabular(inputs=inputs, numeric=numeric, categorical=cats, categories=categories,
                   num_fill=num_fill, cat_fill=cat_fill, missing=missing, sparse=layout,
                   _encoder=encoder)


def _said(sparse: bool | str) -> str:
    """``dataset.sparse`` as the user types it."""
    return str(sparse).lower()


# ----------------------------------------------------------------------------- stage files
def prepared_files(data: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """What a ``Dataset`` with ``prep`` needs in a folder of prepared data (the DVC
    ``prepare`` stage) so that a model trained from it takes the raw table: the ``prep_*``
    arrays (``.npy``) and a JSON object with the run's ``data/*`` facts and the first test rows
    with their dtypes (the logged model's input example). Empty for a dataset without prep."""
    if data.prep is None:
        return {}, {}
    head = data.input_example(5)
    rows = {str(c): [None if pd.isna(v) else v for v in head[c].tolist()] for c in head.columns}
    return data.prep.arrays(), {"facts": dict(data.facts), "input_example": rows,
                                "input_dtypes": {str(c): str(t) for c, t in head.dtypes.items()}}


def restore_prepared(data: Any, arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> Any:
    """``data`` (as read back from the prepared folder) with ``prep``, ``facts`` and the test
    rows of ``prepared_files`` again; unchanged when ``arrays`` has no ``prep_*`` keys."""
    if PREFIX + "inputs" not in arrays:
        return data
    data.prep = Tabular.from_arrays(arrays)
    data.facts = {str(k): float(v) for k, v in extra.get("facts", {}).items()}
    rows, dtypes = extra.get("input_example", {}), extra.get("input_dtypes", {})
    if rows:
        cols = {}
        for c, values in rows.items():
            kind = np.dtype(dtypes[c]).kind if dtypes.get(c) in _NUMPY_DTYPES else "O"
            text = dtypes.get(c) if dtypes.get(c) in ("str", "string") else object
            cols[c] = (pd.Series(values, dtype=dtypes[c]) if kind in "biuf" and None not in values
                       else pd.Series(values, dtype=np.float64 if kind in "biuf" else text))
        order = [c for c in data.prep.inputs if c in cols]  # JSON files sort their keys
        data.tables = {"test": pd.DataFrame({c: cols[c] for c in order})}
    return data


_NUMPY_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float32", "float64"}
