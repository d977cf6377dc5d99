"""The data-source seam on a GPU: the same :class:`Objective`, with X and T on the device.

X and the targets are copied to the device once, here; every evaluation then reads them there
and only W, b (k x m numbers) go up and the gradient and loss come back. The solvers cannot tell
the difference. ``numba.cuda`` is imported only when this class is built (``backend="cuda"``).
"""

from __future__ import annotations

import importlib

import numpy as np

from .objectives import Objective


def load_gpu_kernels():
    """``kernels.gpu``, or a ``ValueError`` that names the fix (cuda extra or backend=cpu)."""
    try:
        return importlib.import_module("kernels.gpu")
    except ImportError as exc:
        raise ValueError(f"backend='cuda' is not available here: {exc}") from None


class CudaObjective(Objective):
    """Mean data loss with device-resident data (numba CUDA kernels, ``kernels/gpu.py``)."""

    def __init__(self, model: str, X: np.ndarray, T: np.ndarray, n_classes: int = 0):
        super().__init__(model, X, T, n_classes)  # host arrays stay for sampling and batches
        self.gpu = load_gpu_kernels()
        self.Xd = self.gpu.gpu_put(self.X)
        self.Td = self.gpu.gpu_put(self.T)

    def loss_grad(self, W, b, G_out, gb_out) -> float:
        self.n_passes += 1
        return self.gpu.gpu_loss_grad(self.kind, self.Xd, self.Td, W, b, G_out, gb_out)

    def hessp(self, W, b, V, vb, H_out, hb_out) -> None:
        self.n_passes += 1
        self.gpu.gpu_hessp(self.kind, self.Xd, W, b, V, vb, H_out, hb_out)

    def decision(self, W, b) -> np.ndarray:
        self.n_passes += 1
        return self.gpu.gpu_decision_function(self.Xd, W, b)

    def subset(self, rows: np.ndarray) -> Objective:
        """Mini-batches are gathered on the host and sent up (small, one copy per batch).

        The rows' targets are taken as already encoded (one-hot for one-vs-rest): building a
        new objective from them would encode them a second time and train on wrong labels.
        """
        sub = super().subset(rows)
        assert isinstance(sub, CudaObjective)
        sub.Xd, sub.Td = self.gpu.gpu_put(sub.X), self.gpu.gpu_put(sub.T)
        return sub
