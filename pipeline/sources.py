"""Where the raw data come from: scikit-learn's bundled files, generators, user files.

Each source returns ``(X, y, feature_names, target_names, class_names)`` with X float64 (n, k)
and y as stored (class index, value, or an (n, m) 0/1 matrix); a user file returns its feature
columns as read (a DataFrame: ``read_table``), encoded later with the training split. The
bundled sets are read from the CSV files scikit-learn ships, without importing scikit-learn
(its import costs more than a whole small run); tests check them against
``sklearn.datasets.load_*``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

Raw = tuple[np.ndarray, np.ndarray, list[str], list[str], list[str] | None]

IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
WINE = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
        "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
        "od280/od315_of_diluted_wines", "proline"]
_BC = ["radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
       "concave points", "symmetry", "fractal dimension"]
BREAST_CANCER = ([f"mean {f}" for f in _BC] + [f"{f} error" for f in _BC]
                 + [f"worst {f}" for f in _BC])
DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
FEATURES = {"iris": IRIS, "wine": WINE, "breast_cancer": BREAST_CANCER}
# Labels of the multilabel set, each a property of the digit shown (deterministic, no seed).
DIGIT_LABELS = {"even": lambda d: d % 2 == 0, "five_or_more": lambda d: d >= 5,
                "prime": lambda d: np.isin(d, (2, 3, 5, 7)), "multiple_of_3": lambda d: d % 3 == 0}


def _data_dir() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-learn is not installed; its bundled datasets are needed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _csv_with_header(name: str, file: str) -> Raw:
    """iris / wine / breast_cancer: first line ``n,k,class names...``, then rows + target."""
    path = _data_dir() / file
    with open(path) as fh:
        header = fh.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return (table[:, :-1], table[:, -1].astype(np.int64), FEATURES[name], ["target"],
            header[2:])


def _digits() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(_data_dir() / "digits.csv.gz", delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def bundled(name: str) -> Raw:
    """One of breast_cancer, iris, wine, digits, diabetes, multilabel (from digits)."""
    if name in FEATURES:
        file = {"iris": "iris.csv", "wine": "wine_data.csv"}.get(name, f"{name}.csv")
        return _csv_with_header(name, file)
    if name == "diabetes":
        X = np.loadtxt(_data_dir() / "diabetes_data_raw.csv.gz")
        y = np.loadtxt(_data_dir() / "diabetes_target.csv.gz")
        return X, y, DIABETES, ["progression"], None
    X, d = _digits()
    pixels = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]
    if name == "digits":
        return X, d, pixels, ["digit"], [str(c) for c in range(10)]
    if name == "multilabel":
        Y = np.column_stack([f(d) for f in DIGIT_LABELS.values()]).astype(np.float64)
        return X, Y, pixels, list(DIGIT_LABELS), None
    raise ValueError(f"dataset.name={name!r} is not bundled")


def synthetic(task: str, n: int, k: int, n_outputs: int, noise: float, seed: int) -> Raw:
    """Gaussian features and a random linear model; ``noise`` scales the additive noise.

    regression: y = X w + b + noise * e; binary: 1[z > 0]; multiclass: argmax of m logits;
    multilabel: m independent 1[z_c > 0]. Same seed, same data.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k))
    m = 1 if task == "binary" else n_outputs
    W = rng.standard_normal((k, m)) * (3.0 / np.sqrt(k))
    Z = X @ W + 0.5 * rng.standard_normal(m) + noise * rng.standard_normal((n, m))
    features = [f"x{j}" for j in range(k)]
    if task == "regression":
        if m == 1:
            return X, Z[:, 0], features, ["y"], None
        return X, Z, features, [f"y{c}" for c in range(m)], None
    if task == "binary":
        return X, (Z[:, 0] > 0).astype(np.int64), features, ["y"], None
    if task == "multiclass":
        return X, np.argmax(Z, axis=1), features, ["y"], None
    return X, (Z > 0).astype(np.float64), features, [f"label{c}" for c in range(m)], None


Table = tuple[Any, np.ndarray, list[str], list[str], list[str], np.ndarray | None]


def read_table(path_str: str, target: list[str], features: list[str] | None,
               error: type[Exception], categorical: str | list[str] | None = None,
               weight: str | None = None) -> Table:
    """Columns of a CSV or Parquet file; every non-target column is a feature by default.

    Returns ``(frame, y, feature_names, target_names, categorical, weights)``: the feature
    columns as a DataFrame (as read: numbers, text, categories, missing values), the targets
    as stored, the categorical feature columns (``categorical``: ``"auto"`` picks the object,
    string and category columns; a list names them) and the ``weight`` column's checked row
    weights (float64 (n,); None without one: it is never a feature). Whatever is wrong with the
    file (missing, a folder, unreadable, empty, damaged, a column that is not there, a text
    column not declared categorical, a bad weight) raises ``error`` naming ``dataset.path`` or
    the column and the fix.
    """
    import pandas as pd

    frame = _read_frame(path_str, error)
    where = f"dataset.path={path_str!r}"
    if len(frame) == 0:
        raise error(f"{where} holds no data rows (a header only); add rows")
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    named = list(categorical) if isinstance(categorical, list | tuple) else []
    for col, field in [*[(c, "dataset.target/features") for c in list(target)
                         + list(features or [])], *[(c, "dataset.categorical") for c in named],
                       *[(c, "dataset.weight_column") for c in [weight] if c is not None]]:
        if col not in frame.columns:
            shown = ", ".join(repr(c[:40]) for c in columns[:20])
            more = f" and {len(columns) - 20} more" if len(columns) > 20 else ""
            raise error(f"column {col!r} ({field}) is not in "
                        f"{Path(path_str).name}; its columns: {shown}{more}")
    names = (list(features) if features
             else [c for c in columns if c not in target and c != weight])
    both = [c for c in names if c in target]
    if both:
        raise error(f"column {both[0]!r} is both a target and a feature (dataset.features); "
                    "a model must not see its target: drop it from dataset.features")
    if not names:
        raise error(f"{where} has no feature columns besides the target "
                    f"{', '.join(map(repr, target))}")
    outside = [c for c in named if c not in names]
    if outside:
        raise error(f"column {outside[0]!r} (dataset.categorical) is not a feature column "
                    f"({'a target' if outside[0] in target else 'not in dataset.features'})")
    cats = ([c for c in names if _is_text(frame[c])] if categorical == "auto"
            else [c for c in names if c in named])
    for c in names:
        if c not in cats and not (pd.api.types.is_numeric_dtype(frame[c])
                                  or pd.api.types.is_bool_dtype(frame[c])):
            hint = ("set dataset.categorical=auto (or list it: dataset.categorical=[...]) to "
                    "one-hot encode it, or drop it (dataset.features)" if _is_text(frame[c])
                    else "convert or drop it first (dataset.features)")
            raise error(f"feature column {c!r} is not numeric (dtype {frame[c].dtype}); "
                        f"allowed: numeric columns and categorical ones; {hint}")
    y = frame[target[0]].to_numpy() if len(target) == 1 else frame[target].to_numpy()
    w = None if weight is None else row_weights(frame[weight], weight, error)
    return (frame[names], y, [str(c) for c in names], [str(c) for c in target],
            [str(c) for c in cats], w)


def row_weights(col: Any, name: str, error: type[Exception]) -> np.ndarray:
    """A weight column as float64 (n,), by ``pipeline.weights.check_sample_weight``'s rules
    (the API's, the only copy): numbers, finite, >= 0, not all 0; else ``error`` naming the
    column, what is wrong, how many rows and the first."""
    import pandas as pd

    from pipeline.weights import check_sample_weight

    where = f"weight column {name!r} (dataset.weight_column)"
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
        raise error(f"{where} is not numeric (dtype {col.dtype}); allowed: numbers >= 0, one "
                    "per row (0 leaves a row out)")
    missing = np.flatnonzero(pd.isna(col).to_numpy())
    if missing.size:
        raise error(f"{where} has missing values ({missing.size} of {len(col)} rows, e.g. row "
                    f"{missing[0]}); every row needs a weight >= 0: fill them (0 leaves a row "
                    "out) or drop those rows")
    try:
        w = check_sample_weight(col.to_numpy(dtype=np.float64), len(col))
    except (TypeError, ValueError) as err:
        raise error(str(err).replace("sample_weight", where)) from None
    assert w is not None
    return w


def _is_text(col: Any) -> bool:
    """Object, string or category dtype: what ``dataset.categorical=auto`` encodes."""
    import pandas as pd

    dtype = col.dtype
    return (pd.api.types.is_object_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype | pd.StringDtype))


PARQUET, CSV = (".parquet", ".pq"), (".csv", ".txt")


def _read_frame(path_str: str, error: type[Exception]):
    """The user's file as a DataFrame, or ``error`` saying why it cannot be read."""
    import pandas as pd

    path = Path(path_str).expanduser()
    where = f"dataset.path={path_str!r}"
    suffix = path.suffix.lower()
    if not path.exists():
        raise error(f"{where}: no such file; give the path of a .csv or .parquet file "
                    "(relative paths start at the current folder)")
    if path.is_dir():
        raise error(f"{where} is a folder; give the path of a .csv or .parquet file")
    if suffix not in PARQUET + CSV:
        raise error(f"{where}: unknown file type {suffix!r}; allowed: .csv, .parquet")
    try:
        with open(path, "rb") as fh:
            empty = not fh.read(1)
    except OSError as err:
        raise error(f"{where} cannot be read ({err.strerror}); check the file's "
                    "permissions") from None
    if empty:
        raise error(f"{where} is empty (0 bytes)")
    kind = "Parquet" if suffix in PARQUET else "CSV"
    try:
        return pd.read_parquet(path) if suffix in PARQUET else pd.read_csv(path)
    except MemoryError:
        raise
    except Exception as err:  # the parser's verdict on the user's bytes, whatever its class
        why = " ".join(str(err).split())[:200] or type(err).__name__
        raise error(f"{where} is not a readable {kind} file ({why}); check that it is not "
                    f"damaged or truncated and that its extension matches its "
                    f"content") from None
