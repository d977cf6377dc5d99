"""linear-models-pipeline: the lecture's linear models, trained fast and tracked.

``pipeline.fit(X, y, model=..., reg=..., lam=...)`` is the whole training core; the Hydra app
(``python -m pipeline``) and the DVC stages (``python -m pipeline.stages``) are built on it.
"""

from .api import decision_function, fit, predict, predict_proba
from .solvers import FitResult, IgnoredParameterWarning, SeparableDataWarning

__all__ = ["FitResult", "IgnoredParameterWarning", "SeparableDataWarning", "decision_function",
           "fit", "predict", "predict_proba"]
