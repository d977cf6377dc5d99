"""Fused loss-and-gradient, Hessian-vector and prediction kernels for the lecture's models.

One pass over ``X`` gives the loss and its gradient: each row's logits ``z = W^T x + b`` are
computed once, turned into the loss term and the row's gradient ``g = dloss/dz``, and ``g x^T``
is added to the block's partial gradient while ``x`` is still in cache.

Conventions (see ``shared/spec/objectives.md``):

- ``X`` (n, k) float64 or float32, C-contiguous; never copied.
- Targets ``T`` (n, m) float64: the values (``linear``), the 0/1 labels (``sigmoid`` kinds:
  ``logistic`` with m = 1, ``multilabel``, one-vs-rest), or the class index in column 0
  (``softmax``, T of shape (n, 1)).
- ``W`` (k, m), ``b`` (m,) float64. The kernels use ``W^T`` (m, k) so that every dot product
  runs over contiguous memory.
- Loss and gradient are means over rows (the 1/n of the spec). Penalties live elsewhere.

Parallelism is over fixed blocks of ``BLOCK_ROWS`` rows; each block writes its own partial sum
and the partials are added in block order, so results are bit-identical for any thread count.

Bit for bit on any CPU of the supported kind (x86-64 with AVX2 and FMA, with or without
AVX-512): no fast-math flag is left to LLVM, so it may not reorder a sum, fuse or not fuse a
product by its own choice, or use a reciprocal; every reduction over features runs in
``_intrinsics.LANES`` explicit vector lanes summed in a fixed tree (``row_dot``), sums over rows
and classes run in the written order, every multiply-add that should fuse says so
(``_intrinsics.fma``), and exp and log are the polynomials below (no libm call). The vector
width of the target changes only how many lanes one instruction holds.
"""

import math
import types

import numpy as np
from numba import njit, prange

from ._config import BLOCK_ROWS, CACHE, PROBE_FASTMATH, SUB_BYTES, SUB_ROWS
from ._intrinsics import float64_as_int64, fma, int64_as_float64, prefetch, row_dot, row_dots4

LINEAR = 0
SIGMOID = 1
SOFTMAX = 2
KINDS = {"linear": LINEAR, "logistic": SIGMOID, "multilabel": SIGMOID, "ovr": SIGMOID,
         "softmax": SOFTMAX}


# --------------------------------------------------------------------------- scalar helpers
@njit(cache=CACHE)
def _axpy(a, x, y_out):
    for j in range(x.shape[0]):
        y_out[j] = fma(a, x[j], y_out[j])


@njit(cache=CACHE)
def _logits(X, i, Wt, b, z_out):
    for c in range(Wt.shape[0]):
        z_out[c] = b[c] + row_dot(X, i, Wt, c)


@njit(cache=CACHE, error_model="numpy")
def _row_hess_dz(kind, z, u):
    """Overwrite ``u`` (= V^T x + vb) with the row's Hessian applied to it (in z-space)."""
    m = z.shape[0]
    if kind == LINEAR:
        for c in range(m):
            u[c] *= 2.0
    elif kind == SIGMOID:
        for c in range(m):
            e = _exp_neg(abs(z[c]))
            u[c] *= e / ((1.0 + e) * (1.0 + e))  # sigma(z) (1 - sigma(z)), stable for any z
    else:
        zmax = z[0]
        for c in range(1, m):
            zmax = max(zmax, z[c])
        s = 0.0
        for c in range(m):
            z[c] = _exp_neg(zmax - z[c])
            s += z[c]
        pu = 0.0
        for c in range(m):
            z[c] /= s
            pu += z[c] * u[c]
        for c in range(m):
            u[c] = z[c] * (u[c] - pu)


# --------------------------------------------------------------------------- vector math
# exp and log1p as branch-free polynomials, so that LLVM vectorises the loops that call them
# (a libm call per entry costs about ten times more and dominated the logistic and softmax
# passes). exp is within 1 ulp and log1p within 3 ulp on their ranges (tests/test_kernels.py).
_LN2_HI = 6.93147180369123816490e-01  # ln 2 with its low 21 bits zero: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.44269504088896338700e+00


@njit(cache=CACHE, error_model="numpy")
def _exp_neg(a):
    """exp(-a) for 0 <= a (inf allowed; below exp(-708) it returns exp(-708)).

    exp(-x) = 2^-k exp(r) with k = round(x / ln 2), r = k ln 2 - x in [-ln2/2, ln2/2]: a
    degree-14 Taylor polynomial gives exp(r) to 1 ulp, and 2^-k is assembled from its exponent
    bits. Called inside the loops over arrays, which LLVM then vectorises (it inlines this with
    its own fast-math flags). The array version it replaces, called with its output also its
    input, ran at 4.6 against 1.7 ns an entry (LLVM's runtime overlap check is the likely cause),
    and it needed a second loop and an int64 buffer for the powers of two.
    """
    x = min(a, 708.0)
    k = math.floor(fma(x, _LOG2E, 0.5))
    r = fma(k, _LN2_LO, k * _LN2_HI - x)  # k * _LN2_HI is exact
    p = 1.0 / 87178291200.0
    p = fma(p, r, 1.0 / 6227020800.0)
    p = fma(p, r, 1.0 / 479001600.0)
    p = fma(p, r, 1.0 / 39916800.0)
    p = fma(p, r, 1.0 / 3628800.0)
    p = fma(p, r, 1.0 / 362880.0)
    p = fma(p, r, 1.0 / 40320.0)
    p = fma(p, r, 1.0 / 5040.0)
    p = fma(p, r, 1.0 / 720.0)
    p = fma(p, r, 1.0 / 120.0)
    p = fma(p, r, 1.0 / 24.0)
    p = fma(p, r, 1.0 / 6.0)
    p = fma(p, r, 0.5)
    p = fma(p, r, 1.0)
    return fma(p, r, 1.0) * int64_as_float64((1023 - np.int64(k)) << 52)


@njit(cache=CACHE, error_model="numpy")
def _log1p_unit(e):
    """log(1 + e) for 0 <= e <= 1: 2 atanh(s), s = e / (2 + e) <= 1/3, as an odd series."""
    s = e / (2.0 + e)
    u = s * s
    p = 1.0 / 37.0
    p = fma(p, u, 1.0 / 35.0)
    p = fma(p, u, 1.0 / 33.0)
    p = fma(p, u, 1.0 / 31.0)
    p = fma(p, u, 1.0 / 29.0)
    p = fma(p, u, 1.0 / 27.0)
    p = fma(p, u, 1.0 / 25.0)
    p = fma(p, u, 1.0 / 23.0)
    p = fma(p, u, 1.0 / 21.0)
    p = fma(p, u, 1.0 / 19.0)
    p = fma(p, u, 1.0 / 17.0)
    p = fma(p, u, 1.0 / 15.0)
    p = fma(p, u, 1.0 / 13.0)
    p = fma(p, u, 1.0 / 11.0)
    p = fma(p, u, 1.0 / 9.0)
    p = fma(p, u, 1.0 / 7.0)
    p = fma(p, u, 1.0 / 5.0)
    p = fma(p, u, 1.0 / 3.0)
    p = fma(p, u, 1.0)
    return 2.0 * s * p


@njit(cache=CACHE, error_model="numpy")
def _log_from_one(v):
    """log(v) for 1 <= v (inf and NaN returned as they are), without libm.

    v = 2^e f with f in [1, 2) read from the bits: log v = e ln 2 + log1p(f - 1), so the result
    does not depend on the C library (whose ``log`` picks an FMA or SSE2 variant per CPU).
    """
    if not v < math.inf:
        return v
    bits = float64_as_int64(v)
    e = float((bits >> 52) - 1023)
    f = int64_as_float64((bits & ((np.int64(1) << 52) - 1)) | (np.int64(1023) << 52))
    return fma(e, _LN2_HI, fma(e, _LN2_LO, _log1p_unit(f - 1.0)))


# --------------------------------------------------------------------------- row tiles
# Four rows at a time: each weight is loaded once for four dot products, and each gradient
# entry is loaded and stored once for four rows, so the pass stays limited by reading X.
# The gradient updates are element-wise (no sum across j), so the loop vectoriser widens them
# without reordering anything; each entry adds its four rows as one chain of fused multiply-adds.
@njit(cache=CACHE)
def _axpy4(a0, a1, a2, a3, x0, x1, x2, x3, g_out):
    for j in range(g_out.shape[0]):
        g_out[j] = fma(a3, x3[j], fma(a2, x2[j], fma(a1, x1[j], fma(a0, x0[j], g_out[j]))))


@njit(cache=CACHE)
def _axpy4x2(d0, d1, d2, d3, e0, e1, e2, e3, x0, x1, x2, x3, g_out, h_out):
    for j in range(g_out.shape[0]):
        a, b, c, d = x0[j], x1[j], x2[j], x3[j]
        g_out[j] = fma(d3, d, fma(d2, c, fma(d1, b, fma(d0, a, g_out[j]))))
        h_out[j] = fma(e3, d, fma(e2, c, fma(e1, b, fma(e0, a, h_out[j]))))


@njit(cache=CACHE, inline="always")
def _prefetch_rows(X, first, stop):
    """Ask for the rows first..stop of X (contiguous), one prefetch per 64-byte cache line."""
    line = max(1, 64 // X.itemsize)
    for q in range(0, (stop - first) * X.shape[1], line):
        prefetch(X, first, q)


@njit(cache=CACHE, error_model="numpy")
def _block_loss_grad_single(kind, X, T, Wt, b, start, stop, g_out, weighted):
    """One output (linear, logistic): the rows in sub-blocks of about ``SUB_BYTES`` of X.

    Per sub-block: the logits of four rows at a time, the losses and derivatives of the whole
    sub-block (one vectorised exp/log sweep for the sigmoid), then the gradient from the rows
    still in L1. X is indexed in 2-D (the four-row gradient update through row views ran at half
    the speed, 12 against 5 ns a row from L1), and the next sub-block is prefetched while this
    one is worked on: once up front, then four rows at a time in both sweeps (asking again for
    lines helped: a prefetch may be dropped under load). On 1e6 x 100 this took the pass from
    1.2-1.3x (linear) and 1.4-1.6x (logistic) of a plain read of X to about 1.05x and 1.15x
    (``bench/solvers.py --pass-table-only``).
    """
    n, k = X.shape
    sub = SUB_BYTES // (X.itemsize * k)
    # a multiple of 8 rows, so the vectorised exp/log sweep has no scalar remainder loop
    sub = sub // 8 * 8 if sub >= 8 else 4
    Z = np.empty(sub)
    A = np.empty(sub)
    Y = np.empty(sub)
    loss = 0.0
    gb = 0.0
    for lo in range(start, stop, sub):
        hi = min(stop, lo + sub)
        _prefetch_rows(X, hi, min(n, hi + sub))
        i = lo
        while i + 4 <= hi:
            _prefetch_rows(X, i + sub, min(n, i + sub + 4))
            s0, s1, s2, s3 = row_dots4(X, i, Wt, 0)
            q = i - lo
            Z[q] = b + s0
            Z[q + 1] = b + s1
            Z[q + 2] = b + s2
            Z[q + 3] = b + s3
            i += 4
        for i2 in range(i, hi):
            Z[i2 - lo] = b + row_dot(X, i2, Wt, 0)
        loss += _sub_loss_dz(kind, T, lo, hi, 1, Z, Y, A, weighted)
        i = lo
        while i + 4 <= hi:
            _prefetch_rows(X, i + sub, min(n, i + sub + 4))
            q = i - lo
            d0, d1, d2, d3 = Z[q], Z[q + 1], Z[q + 2], Z[q + 3]
            gb += (d0 + d1) + (d2 + d3)
            for j in range(k):
                g_out[j] = fma(d3, X[i + 3, j], fma(d2, X[i + 2, j], fma(
                    d1, X[i + 1, j], fma(d0, X[i, j], g_out[j]))))
            i += 4
        for i2 in range(i, hi):
            d = Z[i2 - lo]
            gb += d
            for j in range(k):
                g_out[j] = fma(d, X[i2, j], g_out[j])
    return loss, gb


@njit(cache=CACHE, error_model="numpy")
def _sub_logits(X, Wt, b, lo, hi, Z):
    """Z[(i - lo) * m + c] = b[c] + X[i] . Wt[c] for the rows lo..hi, four rows at a time."""
    m = Wt.shape[0]
    i = lo
    while i + 4 <= hi:
        r = (i - lo) * m
        for c in range(m):
            s0, s1, s2, s3 = row_dots4(X, i, Wt, c)
            Z[r + c] = b[c] + s0
            Z[r + m + c] = b[c] + s1
            Z[r + 2 * m + c] = b[c] + s2
            Z[r + 3 * m + c] = b[c] + s3
        i += 4
    for i2 in range(i, hi):
        r = (i2 - lo) * m
        for c in range(m):
            Z[r + c] = b[c] + row_dot(X, i2, Wt, c)


@njit(cache=CACHE, error_model="numpy")
def _sub_grad(X, lo, hi, D, Gt_out, gb_out):
    """Gt_out[c] += sum_i D[(i - lo) * m + c] X[i], gb_out[c] += sum_i D[...], four rows a time."""
    m = Gt_out.shape[0]
    i = lo
    while i + 4 <= hi:
        x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
        r = (i - lo) * m
        c = 0
        while c + 2 <= m:  # two classes per sweep: each x load feeds two gradient rows
            d0, d1, d2, d3 = D[r + c], D[r + m + c], D[r + 2 * m + c], D[r + 3 * m + c]
            e0, e1, e2, e3 = (D[r + c + 1], D[r + m + c + 1], D[r + 2 * m + c + 1],
                              D[r + 3 * m + c + 1])
            gb_out[c] += (d0 + d1) + (d2 + d3)
            gb_out[c + 1] += (e0 + e1) + (e2 + e3)
            _axpy4x2(d0, d1, d2, d3, e0, e1, e2, e3, x0, x1, x2, x3, Gt_out[c],
                     Gt_out[c + 1])
            c += 2
        if c < m:
            d0, d1, d2, d3 = D[r + c], D[r + m + c], D[r + 2 * m + c], D[r + 3 * m + c]
            gb_out[c] += (d0 + d1) + (d2 + d3)
            _axpy4(d0, d1, d2, d3, x0, x1, x2, x3, Gt_out[c])
        i += 4
    for i2 in range(i, hi):
        r = (i2 - lo) * m
        for c in range(m):
            gb_out[c] += D[r + c]
            _axpy(D[r + c], X[i2], Gt_out[c])


@njit(cache=CACHE)
def _sum4(A, cnt):
    """A[0] + ... + A[cnt - 1] in four interleaved partial sums (entry q in sum q mod 4, the
    last cnt mod 4 entries in the first), added as (s0 + s1) + (s2 + s3): four dependency
    chains instead of one, in an order fixed by cnt alone."""
    s0 = s1 = s2 = s3 = 0.0
    q = 0
    while q + 4 <= cnt:
        s0 += A[q]
        s1 += A[q + 1]
        s2 += A[q + 2]
        s3 += A[q + 3]
        q += 4
    for q2 in range(q, cnt):
        s0 += A[q2]
    return (s0 + s1) + (s2 + s3)


@njit(cache=CACHE, error_model="numpy")
def _sub_loss_dz(kind, T, lo, hi, m, Z, Y, A, weighted):
    """Loss of the rows lo..hi; overwrites the flat logits ``Z`` with dloss/dz.

    The exponentials and logarithms of the whole sub-block are computed in one vectorised loop
    (``_exp_neg``, ``_log1p_unit`` inlined) instead of one libm call per entry. The losses of
    the entries are summed afterwards, in entry order: a running sum inside that loop would be
    a reduction LLVM vectorises only by reordering it.

    ``weighted``: T's last column holds the row weights s; each row's loss and dloss/dz are
    multiplied by its s (a weight of 1 changes no bit: the products by 1.0 are exact).
    """
    cnt = (hi - lo) * m
    wc = T.shape[1] - 1
    loss = 0.0
    if kind == LINEAR:
        for i in range(lo, hi):
            s = T[i, wc] if weighted else 1.0
            for c in range(m):
                d = Z[(i - lo) * m + c] - T[i, c]
                sd = s * d
                loss += sd * d
                Z[(i - lo) * m + c] = 2.0 * sd
        return loss
    if kind == SIGMOID:
        for i in range(lo, hi):
            for c in range(m):
                Y[(i - lo) * m + c] = T[i, c]
        # softplus(z) - y z and sigma(z) - y, both from e = exp(-|z|)
        for q in range(cnt):
            t = Z[q]
            e = _exp_neg(abs(t))
            inv = 1.0 / (1.0 + e)
            pos = t >= 0.0
            A[q] = ((t if pos else 0.0) + _log1p_unit(e)) - Y[q] * t
            Z[q] = (inv if pos else e * inv) - Y[q]
        if weighted:  # a separate sweep: the loop above stays free of the weight loads
            for r in range(hi - lo):
                s = T[lo + r, wc]
                for c in range(m):
                    A[r * m + c] *= s
                    Z[r * m + c] *= s
        return _sum4(A, cnt)
    for r in range(hi - lo):
        zmax = Z[r * m]
        for c in range(1, m):
            zmax = max(zmax, Z[r * m + c])
        Y[r] = zmax
        for c in range(m):
            A[r * m + c] = zmax - Z[r * m + c]
    for q in range(cnt):
        A[q] = _exp_neg(A[q])
    # Each row's sum s of exp(z - zmax) lies in [1, m]: the logs of up to 16 rows are taken as
    # one log of their product (at most m^16, far from overflow), a sixteenth of the log calls.
    # With weights, a group holds consecutive rows of equal weight w (sum w log s = w log prod):
    # weights of 1 give the unweighted groups and bits, rows of distinct weights one log each.
    prod = 1.0
    group = 0
    w = T[lo, wc] if weighted and hi > lo else 1.0
    for r in range(hi - lo):
        cls = int(T[lo + r, 0])
        sr = T[lo + r, wc] if weighted else 1.0
        if group == 16 or sr != w:
            loss += w * _log_from_one(prod)
            prod = 1.0
            group = 0
            w = sr
        s = 0.0
        for c in range(m):
            s += A[r * m + c]
        loss += sr * (Y[r] - Z[r * m + cls])
        prod *= s
        group += 1
        inv = sr / s
        for c in range(m):
            Z[r * m + c] = A[r * m + c] * inv
        Z[r * m + cls] -= sr
    return loss + w * _log_from_one(prod)


@njit(cache=CACHE, error_model="numpy")
def _block_loss_grad(kind, X, T, Wt, b, start, stop, Gt_out, gb_out, z, weighted):
    m = Wt.shape[0]
    sub = SUB_ROWS
    Z = np.empty(sub * m)
    A = np.empty(sub * m)
    Y = np.empty(sub * m if kind != SOFTMAX else sub)
    loss = 0.0
    for lo in range(start, stop, sub):
        hi = min(stop, lo + sub)
        _sub_logits(X, Wt, b, lo, hi, Z)
        loss += _sub_loss_dz(kind, T, lo, hi, m, Z, Y, A, weighted)
        _sub_grad(X, lo, hi, Z, Gt_out, gb_out)
    return loss


@njit(cache=CACHE, error_model="numpy")
def _block_hessp(kind, X, T, Wt, b, Vt, vb, start, stop, Ht_out, hb_out, Z, U, weighted):
    """Four rows at a time: their logits z and directions u = V^T x + vb, the row Hessians
    applied to u (times the row weights, the last column of ``T``, when ``weighted``), then
    u x^T added to ``Ht_out``. ``Z``, ``U``: (4, m) scratch."""
    m = Wt.shape[0]
    wc = T.shape[1] - 1
    i = start
    while i + 4 <= stop:
        for c in range(m):
            z0, z1, z2, z3 = row_dots4(X, i, Wt, c)
            u0, u1, u2, u3 = row_dots4(X, i, Vt, c)
            Z[0, c], Z[1, c], Z[2, c], Z[3, c] = b[c] + z0, b[c] + z1, b[c] + z2, b[c] + z3
            U[0, c], U[1, c], U[2, c], U[3, c] = (vb[c] + u0, vb[c] + u1, vb[c] + u2,
                                                  vb[c] + u3)
        for r in range(4):
            _row_hess_dz(kind, Z[r], U[r])
            if weighted:
                for c in range(m):
                    U[r, c] *= T[i + r, wc]
        for c in range(m):
            d0, d1, d2, d3 = U[0, c], U[1, c], U[2, c], U[3, c]
            hb_out[c] += (d0 + d1) + (d2 + d3)
            _axpy4(d0, d1, d2, d3, X[i], X[i + 1], X[i + 2], X[i + 3], Ht_out[c])
        i += 4
    for i2 in range(i, stop):
        _logits(X, i2, Wt, b, Z[0])
        _logits(X, i2, Vt, vb, U[0])
        _row_hess_dz(kind, Z[0], U[0])
        if weighted:
            for c in range(m):
                U[0, c] *= T[i2, wc]
        for c in range(m):
            hb_out[c] += U[0, c]
            _axpy(U[0, c], X[i2], Ht_out[c])


@njit(cache=CACHE)
def _combine(part_G, part_b, G_out, gb_out, scale):
    """G_out (k, m) = scale * sum over blocks, added in block order (deterministic)."""
    nb, m, k = part_G.shape
    acc = np.zeros((m, k))
    for ib in range(nb):
        acc += part_G[ib]
    for c in range(m):
        for j in range(k):
            G_out[j, c] = acc[c, j] * scale
    for c in range(m):
        s = 0.0
        for ib in range(nb):
            s += part_b[ib, c]
        gb_out[c] = s * scale


@njit(cache=CACHE, parallel=True)
def _loss_grad(kind, X, T, Wt, b, G_out, gb_out, block, mean, weighted=False):
    n, k = X.shape
    m = Wt.shape[0]
    nb = (n + block - 1) // block
    part_G = np.zeros((nb, m, k))
    part_b = np.zeros((nb, m))
    part_l = np.zeros(nb)
    for ib in prange(nb):
        z = np.empty(m)
        start = ib * block
        stop = min(n, start + block)
        if m == 1 and kind != SOFTMAX:
            part_l[ib], part_b[ib, 0] = _block_loss_grad_single(kind, X, T, Wt, b[0], start,
                                                                stop, part_G[ib, 0], weighted)
        else:
            part_l[ib] = _block_loss_grad(kind, X, T, Wt, b, start, stop, part_G[ib],
                                          part_b[ib], z, weighted)
    _combine(part_G, part_b, G_out, gb_out, 1.0 / n if mean else 1.0)
    loss = 0.0
    for ib in range(nb):
        loss += part_l[ib]
    return loss / n if mean else loss


@njit(cache=CACHE, parallel=True)
def _hessp(kind, X, T, Wt, b, Vt, vb, H_out, hb_out, block, mean, weighted):
    n, k = X.shape
    m = Wt.shape[0]
    nb = (n + block - 1) // block
    part_H = np.zeros((nb, m, k))
    part_b = np.zeros((nb, m))
    for ib in prange(nb):
        z = np.empty((4, m))
        u = np.empty((4, m))
        start = ib * block
        _block_hessp(kind, X, T, Wt, b, Vt, vb, start, min(n, start + block), part_H[ib],
                     part_b[ib], z, u, weighted)
    _combine(part_H, part_b, H_out, hb_out, 1.0 / n if mean else 1.0)


@njit(cache=CACHE, parallel=True)
def _decision(X, Wt, b, Z_out):
    for i in prange(X.shape[0]):
        _logits(X, i, Wt, b, Z_out[i])


def _serial_twin(dispatcher):
    """A renamed copy of a parallel kernel's Python function, to compile without threads.

    numba names a cache file by the function's qualified name and first line and does not key
    it by ``parallel``: a twin of the same function object would share the parallel kernel's
    cache entry, and whichever compiled first would serve both (the parallel pass then ran on
    one thread, at half speed).
    """
    f = dispatcher.py_func
    twin = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial",
                              f.__defaults__, f.__closure__)
    twin.__qualname__ = f.__qualname__ + "_serial"
    return twin


# Serial twins (same code, same block order, so bit-identical results) for small problems,
# where starting threads costs more than the pass itself.
_loss_grad_serial = njit(cache=CACHE)(_serial_twin(_loss_grad))
_hessp_serial = njit(cache=CACHE)(_serial_twin(_hessp))
_decision_serial = njit(cache=CACHE)(_serial_twin(_decision))
SERIAL_BELOW = 1 << 18  # n * k * m under which one thread is faster


def _serial(X, m):
    return X.shape[0] * X.shape[1] * m < SERIAL_BELOW


# --------------------------------------------------------------------------- public wrappers
def _check(X, W, b):
    if X.ndim != 2 or not X.flags.c_contiguous or X.dtype not in (np.float32, np.float64):
        raise ValueError("X must be a C-contiguous 2-D float32 or float64 array")
    if W.ndim != 2 or W.shape[0] != X.shape[1] or b.shape != (W.shape[1],):
        raise ValueError(f"W must be (k, m) = ({X.shape[1]}, m) and b (m,); got {W.shape}, "
                         f"{b.shape}")
    return np.ascontiguousarray(W.T, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)


_NO_TARGETS = np.zeros((0, 1))  # what a kernel that reads no targets is given without weights


def _check_weighted(X, T, weighted):
    if weighted and (T.ndim != 2 or T.shape[0] != X.shape[0] or T.shape[1] < 2):
        raise ValueError("weighted=True needs T (n, m + 1) with the row weights in its last "
                         f"column; got T of shape {T.shape} for X of {X.shape[0]} rows")


def loss_grad(kind, X, T, W, b, G_out, gb_out, block=BLOCK_ROWS, mean=True, weighted=False):
    """Mean loss over rows; writes dL/dW into ``G_out`` (k, m) and dL/db into ``gb_out`` (m,).

    ``kind`` is ``LINEAR``, ``SIGMOID`` or ``SOFTMAX``; ``T`` the prepared (n, m) float64 targets
    (the class index in column 0 for softmax). ``mean=False``: sums over rows instead (the part
    of one chunk of a larger data set; the caller adds the chunks and divides by their n).
    ``weighted``: T has one more column, the row weights s, and every row's loss and gradient
    are multiplied by its s in the same pass (the mean still divides by n: a weighted mean
    divides the sums, ``mean=False``, by sum(s)).
    """
    Wt, b = _check(X, W, b)
    _check_weighted(X, T, weighted)
    run = _loss_grad_serial if _serial(X, Wt.shape[0]) else _loss_grad
    return run(kind, X, T, Wt, b, G_out, gb_out, block, mean, weighted)


def hessp(kind, X, W, b, V, vb, H_out, hb_out, block=BLOCK_ROWS, mean=True, T=None,
          weighted=False):
    """Hessian of the mean loss at (W, b) applied to the direction (V, vb), into the ``_out``s
    (``mean=False``: of the summed loss, as in :func:`loss_grad`; ``weighted``: the rows
    weighted by the last column of ``T``, as there)."""
    Wt, b = _check(X, W, b)
    T = _NO_TARGETS if T is None else T
    _check_weighted(X, T, weighted)
    Vt = np.ascontiguousarray(V.T, dtype=np.float64)
    run = _hessp_serial if _serial(X, Wt.shape[0]) else _hessp
    run(kind, X, T, Wt, b, Vt, np.ascontiguousarray(vb, dtype=np.float64), H_out, hb_out,
        block, mean, weighted)


def decision_function(X, W, b, Z_out=None):
    """Logits ``Z = X W + b`` (n, m), computed in parallel over rows."""
    Wt, b = _check(X, W, b)
    if Z_out is None:
        Z_out = np.empty((X.shape[0], Wt.shape[0]))
    (_decision_serial if _serial(X, Wt.shape[0]) else _decision)(X, Wt, b, Z_out)
    return Z_out


def _targets_2d(y, dtype=np.float64):
    y = np.asarray(y, dtype=dtype)
    return np.ascontiguousarray(y.reshape(y.shape[0], -1))


def linear_loss_grad(X, Y, W, b, G_out, gb_out):
    """Mean squared error (1/n) sum ||z - y||^2 and its gradient; ``Y`` (n,) or (n, m)."""
    return loss_grad(LINEAR, X, _targets_2d(Y), W, b, G_out, gb_out)


def logistic_loss_grad(X, y, W, b, G_out, gb_out):
    """Binary cross-entropy (softplus(z) - y z, averaged); ``y`` (n,) in {0, 1}, W (k, 1)."""
    return loss_grad(SIGMOID, X, _targets_2d(y), W, b, G_out, gb_out)


def multilabel_loss_grad(X, Y, W, b, G_out, gb_out):
    """Independent sigmoids sumed over labels; ``Y`` (n, m) in {0, 1}."""
    return loss_grad(SIGMOID, X, _targets_2d(Y), W, b, G_out, gb_out)


def softmax_loss_grad(X, y, W, b, G_out, gb_out):
    """Softmax cross-entropy lse(z) - z_y averaged; ``y`` (n,) class indices in 0..m-1."""
    return loss_grad(SOFTMAX, X, _targets_2d(y), W, b, G_out, gb_out)


# --------------------------------------------------------------------------- bandwidth probe
@njit(cache=CACHE, fastmath=PROBE_FASTMATH)
def _block_sum(X, start, stop):
    """Sum of the rows start..stop, one row after the other. Of the reads tried for the floor
    (this, four rows at a time with the pass's prefetches, one flat loop) this is the fastest."""
    acc = np.zeros(X.shape[1])
    for i in range(start, stop):
        x = X[i]
        for j in range(x.shape[0]):
            acc[j] += x[j]
    return acc.sum()


@njit(cache=CACHE, parallel=True)
def _read_sum(X, block):
    n = X.shape[0]
    nb = (n + block - 1) // block
    part = np.zeros(nb)
    for ib in prange(nb):
        part[ib] = _block_sum(X, ib * block, min(n, ib * block + block))
    return part.sum()


def read_sum(X, block=BLOCK_ROWS):
    """Sum of X in one parallel blocked read: the memory-bandwidth floor of a pass over X."""
    return _read_sum(X, block)
