"""linear-models-pipeline: the lecture's linear models, trained fast and tracked.

``pipeline.fit(X, y, model=..., reg=..., lam=...)`` is the whole training core; the Hydra app
(``python -m pipeline``) and the DVC stages (``python -m pipeline.stages``) are built on it.
"""

from . import _portable  # noqa: F401  (first: pins OpenBLAS's and numpy's CPU dispatch)
from .api import decision_function, fit, predict, predict_proba
from .chunked import (
    ChunkedSource,
    NpyShardsSource,
    NpySource,
    ParquetSource,
    ZarrSource,
    open_source,
)
from .cv import CVResult, cv
from .paths import PathResult, path
from .solvers import FitResult, IgnoredParameterWarning, SeparableDataWarning
from .solvers._problem import ConvergenceWarning, NonFiniteError

__all__ = ["CVResult", "ConvergenceWarning", "FitResult", "IgnoredParameterWarning",
           "NonFiniteError", "PathResult", "SeparableDataWarning", "cv", "decision_function", "fit",
           "path", "predict", "predict_proba"]
__all__ += ["ChunkedSource", "NpyShardsSource", "NpySource", "ParquetSource", "ZarrSource",
            "open_source"]  # data streamed from disk (pipeline.chunked)
