"""The data-source seam on a GPU: the same :class:`Objective`, with X and T on the device.

X and the targets are copied to the device once, here; every evaluation then reads them there
and only W, b (k x m numbers) go up and the gradient and loss come back. The solvers cannot tell
the difference. ``numba.cuda`` is imported only when this class is built (``backend="cuda"``).
"""

from __future__ import annotations

import importlib

import numpy as np

from .objectives import ArrayObjective, PassCounter


def load_gpu_kernels():
    """``kernels.gpu``, or a ``ValueError`` that names the fix (cuda extra or backend=cpu)."""
    try:
        return importlib.import_module("kernels.gpu")
    except ImportError as exc:
        raise ValueError(f"backend='cuda' is not available here: {exc}") from None


class CudaObjective(ArrayObjective):
    """Mean data loss with device-resident data (numba CUDA kernels, ``kernels/gpu.py``).

    The host arrays stay for row samples and the CPU reductions the GPU has no kernel for
    (the Gram matrices, the separability flags).
    """

    def __init__(self, model: str, X: np.ndarray, T: np.ndarray, n_classes: int = 0, *,
                 n_outputs: int | None = None, encoded: bool = False,
                 counter: PassCounter | None = None):
        super().__init__(model, X, T, n_classes, n_outputs=n_outputs, encoded=encoded,
                         counter=counter)
        self.gpu = load_gpu_kernels()
        self.Xd = self.gpu.gpu_put(self.X)
        self.Td = self.gpu.gpu_put(self.T)

    def loss_grad(self, W, b, G_out, gb_out) -> float:
        self.counter.rows += self.n_samples
        return self.gpu.gpu_loss_grad(self.kind, self.Xd, self.Td, W, b, G_out, gb_out)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        self.counter.rows += self.n_samples
        self.gpu.gpu_hessp(self.kind, self.Xd, W, b, V, vb, H_out, hb_out)

    def decision(self, W, b) -> np.ndarray:
        self.counter.rows += self.n_samples
        return self.gpu.gpu_decision_function(self.Xd, W, b)

    def sample(self, rows: np.ndarray) -> CudaObjective:
        """Mini-batches are gathered on the host and sent up (small, one copy per batch).

        The rows' targets are taken as already encoded (one-hot for one-vs-rest): encoding
        them a second time would train on wrong labels.
        """
        X, T = self.take(rows)
        return CudaObjective(self.model, X, T, n_outputs=self.n_outputs, encoded=True,
                             counter=self.counter)
