"""Proximal steps of the lecture's penalties (R = lam/k * ...), applied in place to W.

``thresh`` and ``shrink`` are already scaled by the caller (step * lam / k and friends), so these
functions know nothing about the lecture's scaling: they are the textbook operators.
"""

import numpy as np
from numba import njit

from ._config import CACHE


@njit(cache=CACHE)
def prox_l1(W_out, thresh):
    """Soft-threshold every entry of ``W_out`` at ``thresh`` (in place)."""
    flat = W_out.ravel()
    for i in range(flat.size):
        v = flat[i]
        if v > thresh:
            flat[i] = v - thresh
        elif v < -thresh:
            flat[i] = v + thresh
        else:
            flat[i] = 0.0


@njit(cache=CACHE)
def prox_l2(W_out, shrink):
    """Divide every entry of ``W_out`` by ``1 + shrink`` (in place); shrink = 2 s lam / k."""
    flat = W_out.ravel()
    scale = 1.0 / (1.0 + shrink)
    for i in range(flat.size):
        flat[i] *= scale


@njit(cache=CACHE)
def prox_elasticnet(W_out, thresh, shrink):
    """Soft-threshold at ``thresh`` then divide by ``1 + shrink`` (in place)."""
    prox_l1(W_out, thresh)
    prox_l2(W_out, shrink)


def _warmup():  # pragma: no cover - used by the benchmark to exclude compile time
    W = np.zeros((2, 1))
    prox_elasticnet(W, 0.1, 0.1)
