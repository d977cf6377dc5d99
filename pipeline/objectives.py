"""Data losses L(W, b) of the lecture's models over arrays held in memory.

An :class:`Objective` is the seam between solvers and data: a solver only ever asks it for the
loss and gradient (and Hessian-vector products) at a point, never touches ``X`` itself. Another
data source (memory-mapped chunks, a GPU) provides the same methods and the solvers are unchanged.
"""

from __future__ import annotations

import numpy as np

import kernels

# Curvature of the per-row loss in z: bounds the Hessian by c * [X 1]^T [X 1] / n.
_CURVATURE = {"linear": 2.0, "logistic": 0.25, "multilabel": 0.25, "ovr": 0.25, "softmax": 0.5}


def encode_targets(model: str, T: np.ndarray, n_classes: int) -> np.ndarray:
    """Kernel-ready targets: one-hot columns for one-vs-rest, the rest as given."""
    if model == "ovr":
        return np.ascontiguousarray(np.eye(n_classes)[T[:, 0].astype(np.intp)])
    return T


def n_outputs(model: str, T: np.ndarray, n_classes: int) -> int:
    """Width m of W for this model: classes for softmax/ovr, 1 for logistic, columns otherwise."""
    return n_classes if model in ("softmax", "ovr") else T.shape[1]


class Objective:
    """Mean data loss of ``model`` on (X, T) with fused loss/gradient kernels.

    Parameters
    ----------
    model : str
        One of linear, logistic, softmax, ovr, multilabel.
    X : ndarray (n, k), float64 or float32, C-contiguous.
    T : ndarray (n, m) float64
        Targets as :func:`pipeline.validation.check_targets` returns them.
    n_classes : int
        Number of classes (softmax, ovr), else ignored.
    """

    def __init__(self, model: str, X: np.ndarray, T: np.ndarray, n_classes: int = 0):
        self.model = model
        self.kind = kernels.KINDS[model]
        self.X = X
        self.T = encode_targets(model, T, n_classes)
        self.n_samples, self.n_features = X.shape
        self.n_outputs = n_outputs(model, T, n_classes)
        self.n_passes = 0  # full passes over X made so far (the cost measure of every solver)

    def zeros(self) -> tuple[np.ndarray, np.ndarray]:
        """A zero point (W, b) of the right shapes."""
        return np.zeros((self.n_features, self.n_outputs)), np.zeros(self.n_outputs)

    def loss_grad(self, W, b, G_out, gb_out) -> float:
        """L(W, b); writes dL/dW into ``G_out`` and dL/db into ``gb_out``. One pass over X."""
        self.n_passes += 1
        return kernels.loss_grad(self.kind, self.X, self.T, W, b, G_out, gb_out)

    def loss(self, W, b) -> float:
        """L(W, b) alone (one pass; the gradient is computed and dropped)."""
        G, gb = self.zeros()
        return self.loss_grad(W, b, G, gb)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        """Hessian of L at (W, b) applied to (V, vb). One pass over X."""
        self.n_passes += 1
        kernels.hessp(self.kind, self.X, W, b, V, vb, H_out, hb_out)

    def decision(self, W, b) -> np.ndarray:
        """Logits Z = X W + b (n, m). One pass over X."""
        self.n_passes += 1
        return kernels.decision_function(self.X, W, b)

    def subset(self, rows: np.ndarray) -> Objective:
        """The same loss on a subset of rows (a copy of those rows: mini-batches)."""
        sub = type(self).__new__(type(self))  # same class; targets stay as encoded
        sub.__dict__.update(self.__dict__)
        sub.X = np.ascontiguousarray(self.X[rows])
        sub.T = np.ascontiguousarray(self.T[rows])
        sub.n_samples = sub.X.shape[0]
        sub.n_passes = 0
        return sub

    def abs_max(self) -> float:
        """Largest |X| (no copy of X; for error messages)."""
        if self.X.size == 0:
            return 0.0
        return float(max(np.max(self.X), -np.min(self.X)))

    def column_moments(self, max_rows: int = 20_000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each column, estimated on at most ``max_rows`` rows.

        Estimates suffice: they choose the solvers' coordinates (``solvers._scaling``), which
        are exact whatever the values. The sampled rows are copied, never X.
        """
        n = self.n_samples
        rows = (slice(None) if n <= max_rows
                else np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False)))
        Xs = np.asarray(self.X[rows], dtype=np.float64)
        mean = Xs.mean(axis=0)
        return mean, np.sqrt(np.mean((Xs - mean) ** 2, axis=0))

    def curvature(self) -> float:
        """Bound on the per-row loss's second derivative in z (the Hessian's scale)."""
        return _CURVATURE[self.model]

    def lipschitz(self, max_rows: int = 50_000, n_iter: int = 30, seed: int = 0) -> float:
        """Upper estimate of the gradient's Lipschitz constant in (W, b).

        Power iteration on ``[X 1]^T [X 1] / n`` over at most ``max_rows`` sampled rows, times
        the loss's curvature bound and a 10% margin. Cheap; backtracking guards the rest.
        """
        rng = np.random.default_rng(seed)
        n = self.n_samples
        Xs = self.X if n <= max_rows else self.X[np.sort(rng.choice(n, max_rows, replace=False))]
        Xs = np.asarray(Xs, dtype=np.float64)
        v = rng.standard_normal(self.n_features + 1)
        lam = 1.0
        for _ in range(n_iter):
            u = Xs @ v[:-1] + v[-1]
            w = np.append(Xs.T @ u, u.sum()) / Xs.shape[0]
            lam = float(np.linalg.norm(w))
            if lam == 0.0:
                return 1.0
            v = w / lam
        return 1.1 * _CURVATURE[self.model] * lam
