"""The names a user chooses from: models, penalties, storage dtypes, backends.

One tuple each, read by the solver registry, the input checks, the Hydra schema and the docs.
"""

MODELS = ("linear", "logistic", "softmax", "ovr", "multilabel")
REGS = ("none", "l1", "l2", "elasticnet")
SMOOTH_REGS = ("none", "l2")  # R differentiable: the smooth solvers apply
DTYPES = ("float64", "float32")
BACKENDS = ("cpu", "cuda", "dask")
