"""numba kernels: pure functions of arrays (no pipeline, config, I/O or logging here)."""

from .losses import (
    KINDS,
    LINEAR,
    SIGMOID,
    SOFTMAX,
    decision_function,
    hessp,
    linear_loss_grad,
    logistic_loss_grad,
    loss_grad,
    multilabel_loss_grad,
    softmax_loss_grad,
)
from .prox import prox_elasticnet, prox_l1, prox_l2

__all__ = [
    "KINDS", "LINEAR", "SIGMOID", "SOFTMAX", "decision_function", "hessp", "linear_loss_grad",
    "logistic_loss_grad", "loss_grad", "multilabel_loss_grad", "softmax_loss_grad",
    "prox_elasticnet", "prox_l1", "prox_l2",
]

from .gram import cd_gram, gram  # noqa: E402

__all__ += ["cd_gram", "gram"]

from .checks import all_finite  # noqa: E402

__all__ += ["all_finite"]
