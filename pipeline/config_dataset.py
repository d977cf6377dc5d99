"""The ``dataset`` group's schemas and the checks of a user file's options.

Split from ``pipeline.config`` (which re-exports every name here) to keep both modules small.
``check_file`` returns the problem as a message rather than raising ``ConfigError``: this
module is imported by ``pipeline.config``, which owns that class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

TASKS = ("regression", "binary", "multiclass", "multilabel")
SOURCES = ("sklearn", "synthetic", "file")
SKLEARN_SETS = {"breast_cancer": "binary", "iris": "multiclass", "wine": "multiclass",
                "digits": "multiclass", "diabetes": "regression", "multilabel": "multilabel"}
# Which model can learn which task: the one table both config.load and data.load consult.
MODELS_FOR_TASK = {
    "regression": ("linear",),
    "binary": ("logistic", "softmax", "ovr"),
    "multiclass": ("softmax", "ovr"),
    "multilabel": ("multilabel",),
}
# dataset.missing: error, or the training-split statistic that fills a numeric column (a
# categorical column is always filled with its most frequent training value).
MISSING_POLICIES = ("error", "mean", "median", "most_frequent")


@dataclass
class DatasetConfig:
    """Common dataset fields. ``task`` is fixed for bundled and synthetic sets.

    ``weight_column``: a user file's column of row weights (files only; here on every dataset
    so that setting it elsewhere is a config error that says so, not an unknown key).
    """

    name: str = MISSING
    source: str = "sklearn"
    task: str = "auto"
    val_size: float = 0.2
    test_size: float = 0.2
    weight_column: str | None = None


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    """Generated data: ``n`` rows, ``k`` features, ``n_outputs`` targets/classes/labels."""

    source: str = "synthetic"
    n: int = 1000
    k: int = 20
    n_outputs: int = 1
    noise: float = 0.1
    seed: int = 0


@dataclass
class FileDatasetConfig(DatasetConfig):
    """A user CSV or Parquet file; ``target`` names the target column(s).

    ``categorical``: None (a text column is an error), ``"auto"`` (every object, string or
    category column) or a list of column names, one-hot encoded with the training split's
    categories. ``missing``: see ``MISSING_POLICIES``. ``max_onehot``: the most one-hot columns
    in the dense layout. ``sparse``: ``auto`` (a CSR matrix above
    ``pipeline.tabular.SPARSE_ONEHOT_AT`` one-hot columns), true or false. ``categorical`` and
    ``sparse`` are typed ``Any`` because OmegaConf has no ``str | list[str]`` or
    ``bool | str``; ``check_file`` checks them.
    """

    source: str = "file"
    path: str = MISSING
    target_path: str | None = None
    streaming: Any = False
    stream_above_mb: float = 1024.0
    chunk_rows: int | None = None
    target: list[str] = field(default_factory=list)
    features: list[str] | None = None
    categorical: Any = None
    missing: str = "error"
    max_onehot: int = 1000
    sparse: Any = "auto"


def categorical_spec(value: Any) -> str | list[str]:
    """``dataset.categorical`` as ``"auto"`` or a list of names (None and ``none``: [])."""
    if value is None or value == "none":
        return []
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def check_file(d: FileDatasetConfig) -> str | None:
    """What is wrong with a file dataset's options (a message naming the field), or None."""
    problem = _check_stream_fields(d)
    if problem:
        return problem
    if not d.target and not d.target_path:
        return ("dataset.target=[] names no target column; allowed: one or more column names "
                "of the file (several for multilabel)")
    if d.missing not in MISSING_POLICIES:
        return (f"dataset.missing={d.missing!r} is not allowed; allowed: "
                f"{', '.join(MISSING_POLICIES)}")
    if d.sparse not in (True, False, "auto"):
        return (f"dataset.sparse={d.sparse!r} is not allowed; allowed: auto (sparse above "
                "256 one-hot columns), true, false")
    if d.max_onehot < 1:
        return f"dataset.max_onehot={d.max_onehot!r} is out of range; allowed: >= 1"
    w = d.weight_column
    if w is not None:
        if not w.strip():
            return ("dataset.weight_column='' names no column; allowed: null or the name of a "
                    "numeric column of the file")
        if w in d.target:
            return (f"dataset.weight_column={w!r} is also a target (dataset.target): the "
                    "weights must be a column of their own")
        if w in (d.features or []):
            return (f"dataset.weight_column={w!r} is also listed in dataset.features: a row's "
                    "weight is not a feature; drop it from dataset.features")
        if isinstance(d.categorical, list | tuple) and w in d.categorical:
            return (f"dataset.weight_column={w!r} is also listed in dataset.categorical: the "
                    "weights must be numbers; drop it from dataset.categorical")
    value = d.categorical
    ok = (value is None or isinstance(value, str)
          or (isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value)))
    if not ok:
        return (f"dataset.categorical={value!r} is not allowed; allowed: auto, none, or a list "
                "of column names ([color,size])")
    return None


# ----------------------------------------------------------------------------- streaming
# dataset.streaming (``pipeline.data_streamed``): X read chunk by chunk, never whole.
STREAM_ONLY = (".npy", ".zarr")  # X the in-memory reader cannot read (also folders of shards)
CSV_SUFFIXES = (".csv", ".txt")


def _streaming_value(value: Any) -> str:
    """``dataset.streaming`` as ``"true"``, ``"false"`` or ``"auto"`` (else the value as text)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).lower() if str(value).lower() in ("true", "false", "auto") else str(value)


def _disk_mb(path: str) -> float:
    """Size of a file, or of every file under a folder, in MiB (0 when it is not there)."""
    from pathlib import Path

    p = Path(path).expanduser()
    if p.is_file():
        return p.stat().st_size / 2**20
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20
    return 0.0


def stream_only(path: str) -> bool:
    """Whether ``path`` is X that only the streamed reader reads: a .npy file, a zarr array
    or a folder of .npy shards."""
    from pathlib import Path

    p = Path(path).expanduser()
    return (p.suffix.lower() in STREAM_ONLY or (p / "zarr.json").exists()
            or (p / ".zarray").exists() or (p.is_dir() and any(p.glob("*.npy"))))


def streams(d: Any) -> bool:
    """Whether a file dataset is streamed: ``streaming=true``; ``auto`` for X that only the
    streamed reader reads, or a file (folder) above ``stream_above_mb`` MiB on disk that is
    not CSV (a CSV has no row groups to read by: it is always loaded whole under ``auto``)."""
    mode = _streaming_value(getattr(d, "streaming", False))
    if mode != "auto":
        return mode == "true"
    path = str(d.path)
    if stream_only(path):
        return True
    return (not path.lower().endswith(CSV_SUFFIXES)
            and _disk_mb(path) > float(d.stream_above_mb))


def _check_stream_fields(d: Any) -> str | None:
    mode = _streaming_value(d.streaming)
    if mode not in ("true", "false", "auto"):
        return (f"dataset.streaming={d.streaming!r} is not allowed; allowed: false (load the "
                "file whole), true (read it chunk by chunk), auto (stream above "
                "dataset.stream_above_mb MiB on disk)")
    if not d.stream_above_mb >= 0:
        return (f"dataset.stream_above_mb={d.stream_above_mb!r} is out of range; allowed: "
                ">= 0 (MiB on disk)")
    if d.chunk_rows is not None and d.chunk_rows < 1:
        return f"dataset.chunk_rows={d.chunk_rows!r} is out of range; allowed: null or >= 1"
    if mode == "false" and d.target_path is not None:
        return (f"dataset.target_path={d.target_path!r} is read only when streaming a .npy or "
                "zarr X: set dataset.streaming=true, or drop dataset.target_path (a table "
                "names its targets with dataset.target)")
    if mode == "false" and stream_only(str(d.path)):
        return (f"dataset.path={d.path!r} is a .npy file, .npy shards or a zarr array, which "
                "the app reads only chunk by chunk: set dataset.streaming=true (or auto)")
    return None


def check_streaming(d: Any, model: str, search: str, backend: str, solver: str,
                    class_weight: Any) -> str | None:
    """What a streamed run cannot honour (a message naming the field and the fix), or None.

    Called for a file dataset that ``streams``. Streaming reads numeric columns chunk by
    chunk, so anything that needs the table whole is refused, never ignored.
    ``class_weight`` streams (``pipeline.streamed_fit``); the argument is kept for the
    callers' sake.
    """
    why = ("dataset.streaming=true" if _streaming_value(d.streaming) == "true" else
           f"dataset.streaming=auto streams {d.path!r} (above dataset.stream_above_mb="
           f"{d.stream_above_mb:g} MiB, or not a table)")
    back = "; or set dataset.streaming=false to load the file whole"
    path = str(d.path).lower()
    if path.endswith(CSV_SUFFIXES):
        return (f"{why}: a CSV file cannot be streamed (no row groups to read by); convert it "
                "to Parquet (pd.read_csv(path).to_parquet(out, row_group_size=65536)) or "
                f"write .npy shards{back}")
    table = not stream_only(str(d.path))
    if table and d.target_path is not None:
        return (f"dataset.target_path={d.target_path!r} is for X in .npy files or zarr; a "
                "Parquet file names its target columns with dataset.target: drop "
                "dataset.target_path")
    if not table and not d.target_path:
        return (f"{why}: X in {d.path!r} has no target columns; name the targets' .npy file, "
                "shard folder or zarr array with dataset.target_path=...")
    if not table and d.features is not None:
        return ("dataset.features selects columns of a Parquet file; a .npy or zarr X is used "
                "with all its columns: drop dataset.features")
    refused = [
        (categorical_spec(d.categorical) != [], "dataset.categorical",
         "one-hot encoding needs the training split's categories in memory; encode the "
         "columns in the file first, or drop dataset.categorical"),
        (d.missing != "error", f"dataset.missing={d.missing}",
         "filling holes is not streamed; fill them in the file first, or use "
         "dataset.missing=error"),
        (d.weight_column is not None and not table, "dataset.weight_column",
         "row weights stream from a column of a Parquet file only; drop "
         "dataset.weight_column"),
        (search != "none", f"search={search}",
         "a streamed run fits one lambda; use search=none (reg.lam=...)"),
        (backend != "cpu", f"backend={backend}", "a streamed run reads chunks on backend=cpu"),
        (solver == "sgd", "solver=sgd",
         "sgd draws shuffled mini-batches from all rows; use solver=auto (or lbfgs, newton, "
         "prox_newton, ...)"),
    ]
    for bad, field_name, fix in refused:
        if bad:
            return f"{why} does not support {field_name}: {fix}{back}"
    return None
