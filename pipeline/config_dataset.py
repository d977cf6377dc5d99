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
    if not d.target:
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
