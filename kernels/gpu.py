"""numba.cuda twins of the CPU kernels: fused loss-and-gradient, Hessian-vector, logits, prox.

Same signatures and the same numerically stable forms as ``kernels.losses`` and
``kernels.prox``; this is the only module that imports ``numba.cuda``. Import it lazily, when
``backend=cuda`` is selected: without a usable GPU (and without the simulator) the import raises
an ``ImportError`` that names the fix.

Data convention
---------------
- ``X`` (n, k) float32 or float64 and ``T`` (n, m) float64 should be *resident on the device*
  (``gpu_put``); host arrays are accepted and copied on every call (correct, but slow).
- ``W`` (k, m) and ``b`` (m,) are small host arrays, copied per call as ``W^T`` (m, k) float64.
- ``G_out`` (k, m) and ``gb_out`` (m,) are host arrays, filled in place; the loss is returned.
- The prox steps work in place on device arrays (host arrays are copied there and back).

Design of one evaluation
------------------------
``_warp_kernel`` (the default): a warp owns batches of rows (grid-stride, block-uniform). It
loads a batch with lanes over features (coalesced, all loads in flight at once) into registers,
sums the per-lane partial logits with a warp-shuffle butterfly (``shfl_xor``), lane ``r`` turns
row ``r``'s ``z`` into its loss and ``g = dloss/dz``, the ``g``s are broadcast with shuffles
and ``x g^T`` is added to per-lane accumulators while the x values are still in registers: X
is read exactly once, with no shared memory and no block barrier.

``_tile_kernel`` (wide data, when W, the sums and a batch would not fit in registers): blocks
walk over tiles of ``TILE_ROWS`` rows; warps compute the rows' ``g`` as above into shared
memory, then each thread owns features ``j = tid, tid + THREADS, ...`` and accumulates
``sum_r X[r, j] g[r, :]``, re-reading the tile from L1/L2 (DRAM still sees X once).

Every warp (register kernel) or block (tile kernel) writes its partial sums to its own column
of a ``partials`` array and a second kernel adds the columns in a fixed order. The grid depends
only on ``n``, ``k`` and ``m``, so results are bit-identical from run to run (no atomics).

All arithmetic is float64 (float32 ``X`` is widened at use): the pass is memory-bound on
data-centre GPUs, and float64 accumulation keeps the float32 error at the input rounding only
(on consumer GPUs, with slow float64, it is compute-bound). Register residency of the per-lane
arrays was checked in the PTX for sm_90. Measured on an H200 (n = 2e7, k = 100, float32, one
pass = 8 GB; device copy 3.4-3.8 TB/s read + write): linear 3.9-4.3 ms, logistic 5.7 ms (its
float64 exp/log1p per row, on 8 of 32 lanes, is the limit), softmax m=4 about 12 ms; PyTorch's
two passes (``X @ w``, ``X.T @ r``) took 5.0 ms. Parity with float64: relative error ~5e-15.

Under the numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, used by CI) warp shuffles are not
available, so ``_warp_allreduce`` is replaced by a shared-memory version that adds the same
values in the same tree order; every other line runs as on the device.
"""

import math

import numpy as np

from .losses import LINEAR, SIGMOID, SOFTMAX

# numba 0.68.0 with numpy 2.5 failed compiling CUDA kernels: np.row_stack was removed.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

_FIX = ("install the CUDA extra (pip install -e '.[cuda]') on a machine with an NVIDIA GPU and "
        "driver, or use backend=cpu")

try:
    from numba import config as _numba_config
    from numba import cuda
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"kernels.gpu needs numba.cuda, which failed to import ({exc}); {_FIX}") \
        from exc

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)


def _thread_safe_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` allocation atomic.

    The simulator runs a block's threads as Python threads and keys each shared array by its
    call site with a check-then-set on a dict: two threads arriving first together can each
    create an array, and one of them then works on an orphan its block never sees (CI saw
    wrong Hessians and run-to-run differences from it). Same keying, under a lock.
    """
    import sys
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: one buffer, nothing to race on
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            res = self._allocations.get(key)
            if res is None:
                res = self._allocations[key] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array


if SIMULATOR:
    _thread_safe_simulator_shared_arrays()


def cuda_available():
    """Return ``(ok, reason)``: whether these kernels can run here, and a one-line why."""
    if SIMULATOR:
        return True, "numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): correct but slow"
    try:
        if cuda.is_available():
            name = cuda.get_current_device().name
            name = name.decode() if isinstance(name, bytes) else str(name)
            return True, f"CUDA device {name}"
        err = cuda.cuda_error()
        err = " ".join(str(err or "no device found").split())
        return False, f"no usable CUDA GPU or driver ({err})"
    except Exception as exc:  # noqa: BLE001 - driver errors come in many types
        return False, f"CUDA driver failed to initialise ({exc})"


_OK, _REASON = cuda_available()
if not _OK:
    raise ImportError(f"kernels.gpu cannot run: {_REASON}; {_FIX}")

# Launch geometry. The simulator runs every thread as a Python thread: keep it small there but
# still with several warps, tiles and blocks so that the indexing is exercised.
THREADS = 64 if SIMULATOR else 128          # threads per block, a multiple of 32
TILE_ROWS = 32                              # rows per tile, a multiple of THREADS // 32
DECISION_ROWS = 8 if SIMULATOR else 4       # rows per warp per step of the logits kernel
MAX_BLOCKS = 2 if SIMULATOR else 2048       # grid size cap; fixed, so results are repeatable
WARP_BLOCKS = 2 if SIMULATOR else 1024      # the same for the register kernel
FLAT_THREADS = 32 if SIMULATOR else 256     # threads per block of the element-wise kernels
NWARPS = THREADS // 32
_FULL = 0xFFFFFFFF


# --------------------------------------------------------------------------- warp reduction
if SIMULATOR:
    _SIM_MAXP = 256

    @cuda.jit(device=True)
    def _warp_allreduce(p, count):
        """Simulator twin of the shuffle butterfly: same additions in the same order.

        Every lane adds its warp's 32 values pairwise (lanes l and l + half, half = 16, ..., 1),
        which is the tree the butterfly builds for every lane (fp addition is commutative).
        """
        buf = cuda.shared.array((THREADS, _SIM_MAXP), np.float64)
        tid = cuda.threadIdx.x
        base = tid - tid % 32
        for c in range(count):
            buf[tid, c] = p[c]
        cuda.syncthreads()
        s = np.array(buf[base:base + 32, :count])
        half = 16
        while half > 0:
            s[:half] = s[:half] + s[half:2 * half]
            half //= 2
        cuda.syncthreads()
        for c in range(count):
            p[c] = s[0, c]
    @cuda.jit(device=True)
    def _warp_gather(v, width, rows, out):
        """Simulator twin of the shuffle broadcast in ``_warp_gather`` below."""
        buf = cuda.shared.array((THREADS, _SIM_MAXP), np.float64)
        tid = cuda.threadIdx.x
        base = tid - tid % 32
        for c in range(width):
            buf[tid, c] = v[c]
        cuda.syncthreads()
        for rr in range(rows):
            for c in range(width):
                out[rr * width + c] = buf[base + rr, c]
        cuda.syncthreads()
else:
    @cuda.jit(device=True)
    def _warp_gather(v, width, rows, out):
        """out[rr * width + c] = lane rr's ``v[c]``, for every lane (shuffle broadcasts)."""
        for rr in range(rows):
            for c in range(width):
                out[rr * width + c] = cuda.shfl_sync(_FULL, v[c], rr)

    @cuda.jit(device=True)
    def _warp_allreduce(p, count):
        """Sum ``p[:count]`` over the 32 lanes; every lane gets the (bit-identical) total."""
        for c in range(count):
            v = p[c]
            v += cuda.shfl_xor_sync(_FULL, v, 16)
            v += cuda.shfl_xor_sync(_FULL, v, 8)
            v += cuda.shfl_xor_sync(_FULL, v, 4)
            v += cuda.shfl_xor_sync(_FULL, v, 2)
            v += cuda.shfl_xor_sync(_FULL, v, 1)
            p[c] = v


@cuda.jit(device=True)
def _select_row(p, width, rows, lane, out):
    """out[:width] = p[lane * width : (lane + 1) * width] (zeros for lane >= rows).

    Written as a masked sum with constant indices: the obvious ``p[lane * width + c]`` (or an
    ``if rr == lane`` copy, which the compiler rewrites into it) indexes ``p`` dynamically and
    moves it from registers to local memory, slowing the hot loop that accumulates into it.
    A non-finite sum in another row of the batch makes this row non-finite too; the loss is
    then non-finite anyway.
    """
    for c in range(width):
        v = 0.0
        for rr in range(rows):
            v += p[rr * width + c] * (1.0 if rr == lane else 0.0)
        out[c] = v


# --------------------------------------------------------------------------- row math
@cuda.jit(device=True)
def _sigmoid(t):
    if t >= 0.0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


@cuda.jit(device=True)
def _softplus_sigmoid(t):
    """(softplus(t), sigmoid(t)) from one exp(-|t|): the CPU's branches, the same values."""
    e = math.exp(-abs(t))
    if t > 0.0:
        sp = t + math.log1p(e)
    else:
        sp = math.log1p(e)
    if t >= 0.0:
        return sp, 1.0 / (1.0 + e)
    return sp, e / (1.0 + e)


@cuda.jit(device=True)
def _row_loss_grad(kind, z, m, T, i, g):
    """Loss of row ``i`` from its logits ``z[:m]``; writes dloss/dz to ``g[:m]``."""
    loss = 0.0
    if kind == LINEAR:
        for c in range(m):
            d = z[c] - T[i, c]
            loss += d * d
            g[c] = 2.0 * d
    elif kind == SIGMOID:
        for c in range(m):
            sp, sg = _softplus_sigmoid(z[c])
            loss += sp - T[i, c] * z[c]
            g[c] = sg - T[i, c]
    else:
        cls = int(T[i, 0])
        zmax = z[0]
        for c in range(1, m):
            zmax = max(zmax, z[c])
        s = 0.0
        for c in range(m):
            g[c] = math.exp(z[c] - zmax)
            s += g[c]
        loss = zmax + math.log(s) - z[cls]
        for c in range(m):
            g[c] /= s
        g[cls] -= 1.0
    return loss


@cuda.jit(device=True)
def _row_hess(kind, zu, m, g):
    """Row Hessian (z-space) at ``z = zu[:m]`` applied to ``u = zu[m:2m]``, into ``g[:m]``.

    Overwrites ``zu[:m]`` with the softmax probabilities (softmax kind)."""
    if kind == LINEAR:
        for c in range(m):
            g[c] = 2.0 * zu[m + c]
    elif kind == SIGMOID:
        for c in range(m):
            s = _sigmoid(zu[c])
            g[c] = zu[m + c] * (s * (1.0 - s))
    else:
        zmax = zu[0]
        for c in range(1, m):
            zmax = max(zmax, zu[c])
        s = 0.0
        for c in range(m):
            zu[c] = math.exp(zu[c] - zmax)
            s += zu[c]
        pu = 0.0
        for c in range(m):
            zu[c] /= s
            pu += zu[c] * zu[m + c]
        for c in range(m):
            g[c] = zu[c] * (zu[m + c] - pu)


# --------------------------------------------------------------------------- kernels
_KERNELS = {}


def _rows_per_batch(rows, np_):
    """Rows a warp reduces together: all of them in the simulator (fewer barriers), else as many
    as keep ``rows * np_`` partial sums in registers (<= 16); more rows = more loads in flight."""
    rb = rows
    while not SIMULATOR and rb > 1 and rb * np_ > 16:
        rb //= 2
    return rb


REGISTER_BUDGET = 64  # float64 values per lane the register kernel may hold (W, sums, x)


@cuda.jit(device=True)
def _load_rows(X, row0, rows, kpl, lane, out):
    """out[rr * kpl + u] = X[row0 + rr, lane + 32 u] (X's dtype), 0 outside X.

    Clamped indices and a select instead of branches, so all the loads are issued at once.
    """
    n, k = X.shape
    for rr in range(rows):
        i = min(row0 + rr, n - 1)
        for u in range(kpl):
            j = lane + 32 * u
            x = X[i, min(j, k - 1)]
            out[rr * kpl + u] = x if (j < k and row0 + rr < n) else 0


# Register-kernel tuning, measured on an H200 (n = 2e7, k = 100, float32): 8 rows per batch
# beat 4 and 16 (16 spilled or cut occupancy), and prefetching the next batch into registers
# gained nothing over that, so it is off.
PREFETCH = False     # load the next batch while computing this one
X_REGISTERS = 32     # 32-bit registers per lane for x values (twice that with PREFETCH)


def _warp_plan(k, m, hess, itemsize):
    """``(kpl, rb)`` for ``_warp_kernel`` (features per lane, rows per batch), or None when its
    per-lane arrays would not fit in registers (wide data: ``_tile_kernel`` then)."""
    np_ = 2 * m if hess else m
    kpl = (k + 31) // 32
    per_x = itemsize // 4 * (2 if PREFETCH else 1)
    rb = 16
    while rb > 1 and (rb * np_ > 16 or rb * kpl * per_x > X_REGISTERS):
        rb //= 2
    if kpl * (np_ + m) + rb * kpl * per_x // 2 > REGISTER_BUDGET:
        return None
    return kpl, (16 if SIMULATOR else rb)  # the simulator: fewer barriers, same code


def _warp_kernel(kind, m, kpl, rb, hess, xdtype):
    """Register kernel: each warp owns rows and keeps its x values, W and sums in registers.

    A warp loads ``rb`` rows (lanes over features, coalesced, all loads in flight at once),
    reduces their logits with the butterfly, lane ``r`` computes row ``r``'s ``g``, the ``g``s
    are broadcast with shuffles and ``x g^T`` is added to per-lane accumulators, with the x
    values still in registers: X is read exactly once, no shared memory, no block barrier.
    Each warp writes its sums to its own column of ``partials``.
    """
    key = ("warp", kind, m, kpl, rb, hess, np.dtype(xdtype).name, PREFETCH)
    if key in _KERNELS:
        return _KERNELS[key]
    NP = 2 * m if hess else m
    NX, NW, NA, NPB, NG = rb * kpl, kpl * NP, kpl * m, rb * NP, rb * m
    XT, PF = np.dtype(xdtype).type, PREFETCH   # x kept in X's dtype, widened at each use

    @cuda.jit
    def kernel(X, T, Wt, b, Vt, vb, partials):
        n, k = X.shape
        lane = cuda.threadIdx.x % 32
        warp = cuda.threadIdx.x // 32
        w = cuda.local.array(NW, np.float64)      # W^T (and V^T) at the lane's features
        acc = cuda.local.array(NA, np.float64)    # sum_rows x g at the lane's features
        accb = cuda.local.array(m, np.float64)    # sum_rows g (the bias)
        xs = cuda.local.array(NX, XT)             # the batch's x values
        xn = cuda.local.array(NX, XT)             # the next batch's, being loaded
        p = cuda.local.array(NPB, np.float64)
        zr = cuda.local.array(NP, np.float64)
        gr = cuda.local.array(m, np.float64)
        gall = cuda.local.array(NG, np.float64)
        for u in range(kpl):
            j = lane + 32 * u
            jc = min(j, k - 1)
            for c in range(m):
                w[u * NP + c] = Wt[c, jc] if j < k else 0.0
                if hess:
                    w[u * NP + m + c] = Vt[c, jc] if j < k else 0.0
                acc[u * m + c] = 0.0
        for c in range(m):
            accb[c] = 0.0
        loss = 0.0
        step = NWARPS * rb      # block-uniform loop: every thread reduces equally often
        stride = cuda.gridDim.x * step
        if PF:
            _load_rows(X, cuda.blockIdx.x * step + warp * rb, rb, kpl, lane, xn)
        for base in range(cuda.blockIdx.x * step, n, stride):
            row0 = base + warp * rb
            if PF:
                for q in range(NX):
                    xs[q] = xn[q]
                # prefetch the next batch: its loads are in flight while this one is computed
                _load_rows(X, row0 + stride, rb, kpl, lane, xn)
            else:
                _load_rows(X, row0, rb, kpl, lane, xs)
            for q in range(NPB):
                p[q] = 0.0
            for rr in range(rb):
                for u in range(kpl):
                    for c in range(NP):
                        p[rr * NP + c] += float(xs[rr * kpl + u]) * w[u * NP + c]
            _warp_allreduce(p, NPB)
            _select_row(p, NP, rb, lane, zr)
            for c in range(m):
                gr[c] = 0.0
            if lane < rb and row0 + lane < n:
                for c in range(m):
                    zr[c] += b[c]
                if hess:
                    for c in range(m):
                        zr[m + c] += vb[c]
                    _row_hess(kind, zr, m, gr)
                else:
                    loss += _row_loss_grad(kind, zr, m, T, row0 + lane, gr)
            _warp_gather(gr, m, rb, gall)
            for rr in range(rb):
                for c in range(m):
                    gv = gall[rr * m + c]
                    accb[c] += gv
                    for u in range(kpl):
                        acc[u * m + c] += float(xs[rr * kpl + u]) * gv
        col = cuda.blockIdx.x * NWARPS + warp
        for u in range(kpl):
            j = lane + 32 * u
            if j < k:
                for c in range(m):
                    partials[c * (k + 1) + j, col] = acc[u * m + c]
        lw = cuda.local.array(1, np.float64)      # per-lane losses, summed by the butterfly
        lw[0] = loss
        _warp_allreduce(lw, 1)
        if lane == 0:
            for c in range(m):
                partials[c * (k + 1) + k, col] = accb[c]
            partials[m * (k + 1), col] = lw[0]

    _KERNELS[key] = kernel
    return kernel


def _tile_kernel(kind, m, kpt, hess):
    """Kernel for (kind, m outputs, kpt features per thread, loss-grad or hessp), compiled once.

    ``m`` and ``kpt`` are compile-time constants so the per-thread arrays live in registers.
    """
    key = ("tile", kind, m, kpt, hess)
    if key in _KERNELS:
        return _KERNELS[key]
    R, RPW, NP = TILE_ROWS, TILE_ROWS // NWARPS, (2 * m if hess else m)
    RB = _rows_per_batch(RPW, NP)
    NPB = RB * NP       # a closure constant: local array sizes must be compile-time literals

    @cuda.jit
    def kernel(X, T, Wt, b, Vt, vb, partials):
        n, k = X.shape
        tid = cuda.threadIdx.x
        lane = tid % 32
        warp = tid // 32
        g = cuda.shared.array((R, m), np.float64)
        warp_loss = cuda.shared.array(NWARPS, np.float64)
        acc = cuda.local.array((kpt, m), np.float64)
        p = cuda.local.array(NPB, np.float64)
        zr = cuda.local.array(NP, np.float64)
        wj = cuda.local.array(NP, np.float64)
        for q in range(kpt):
            for c in range(m):
                acc[q, c] = 0.0
        loss = 0.0
        for tile in range(cuda.blockIdx.x, (n + R - 1) // R, cuda.gridDim.x):
            row0 = tile * R + warp * RPW
            # phase 1: a warp per row, lanes over features, shuffle-reduced logits (RB rows at
            # a time); every thread of the block calls the reduction the same number of times
            for r0 in range(0, RPW, RB):
                for q in range(NPB):
                    p[q] = 0.0
                # feature-major: W's column j is loaded once for the RB rows, and the RB
                # independent loads of X keep more memory requests in flight
                nv = n - (row0 + r0)              # rows of this batch inside X (may be <= 0)
                for j in range(lane, k, 32):
                    for c in range(m):
                        wj[c] = Wt[c, j]
                        if hess:
                            wj[m + c] = Vt[c, j]
                    for rr in range(RB):
                        # unconditional (clamped) loads, rows past n zeroed: no branch
                        # between the loads, so all RB are issued before the first FMA waits
                        x = float(X[min(row0 + r0 + rr, n - 1), j])
                        x = x if rr < nv else 0.0
                        for c in range(NP):
                            p[rr * NP + c] += x * wj[c]
                _warp_allreduce(p, NPB)
                # every lane now holds all RB rows' sums: lane rr does row rr's loss math
                _select_row(p, NP, RB, lane, zr)
                if lane < RB:
                    i = row0 + r0 + lane
                    r = warp * RPW + r0 + lane
                    if i >= n:
                        for c in range(m):
                            g[r, c] = 0.0
                    else:
                        for c in range(m):
                            zr[c] += b[c]
                        if hess:
                            for c in range(m):
                                zr[m + c] += vb[c]
                            _row_hess(kind, zr, m, g[r])
                        else:
                            loss += _row_loss_grad(kind, zr, m, T, i, g[r])
            cuda.syncthreads()
            # phase 2: a thread per feature (feature k is the bias), tile re-read from cache
            row0 = tile * R
            for q in range(kpt):
                j = tid + q * THREADS
                if j <= k:
                    jj = min(j, k - 1)
                    for r in range(R):
                        # branch-free clamped loads again; g is 0 for rows past n
                        x = float(X[min(row0 + r, n - 1), jj])
                        x = 1.0 if j == k else (x if row0 + r < n else 0.0)
                        for c in range(m):
                            acc[q, c] += x * g[r, c]
            cuda.syncthreads()
        blk = cuda.blockIdx.x
        for q in range(kpt):
            j = tid + q * THREADS
            if j <= k:
                for c in range(m):
                    partials[c * (k + 1) + j, blk] = acc[q, c]
        lw = cuda.local.array(1, np.float64)      # per-lane losses, summed by the butterfly
        lw[0] = loss
        _warp_allreduce(lw, 1)
        if lane == 0:
            warp_loss[warp] = lw[0]
        cuda.syncthreads()
        if tid == 0:
            s = 0.0
            for w in range(NWARPS):
                s += warp_loss[w]
            partials[m * (k + 1), blk] = s

    _KERNELS[key] = kernel
    return kernel


COMBINE_OUTPUTS = 4  # sums a warp forms at once in _combine
COMBINE_UNROLL = 8   # columns a lane loads per step (all in flight together)


@cuda.jit
def _combine(partials, out):
    """out[q] = sum over columns of partials[q, :] (shape (size, cols)), in a fixed order.

    A warp takes COMBINE_OUTPUTS rows of ``partials``; lane l adds columns l, l + 32, ... in
    order (coalesced; COMBINE_OUTPUTS * COMBINE_UNROLL loads in flight) and the butterfly adds
    the lanes.
    """
    size, cols = partials.shape
    lane = cuda.threadIdx.x % 32
    warp = cuda.threadIdx.x // 32
    p = cuda.local.array(COMBINE_OUTPUTS, np.float64)
    v = cuda.local.array((COMBINE_OUTPUTS, COMBINE_UNROLL), np.float64)
    step = NWARPS * COMBINE_OUTPUTS
    for base in range(cuda.blockIdx.x * step, size, cuda.gridDim.x * step):
        q0 = base + warp * COMBINE_OUTPUTS
        for qq in range(COMBINE_OUTPUTS):
            p[qq] = 0.0
        for t0 in range(0, cols, 32 * COMBINE_UNROLL):
            for qq in range(COMBINE_OUTPUTS):     # clamped, branch-free loads first
                q = min(q0 + qq, size - 1)
                for tu in range(COMBINE_UNROLL):
                    t = t0 + 32 * tu + lane
                    x = partials[q, min(t, cols - 1)]
                    v[qq, tu] = x if t < cols else 0.0
            for qq in range(COMBINE_OUTPUTS):
                for tu in range(COMBINE_UNROLL):
                    p[qq] += v[qq, tu]
        _warp_allreduce(p, COMBINE_OUTPUTS)
        if lane == 0:
            for qq in range(COMBINE_OUTPUTS):
                if q0 + qq < size:
                    out[q0 + qq] = p[qq]


def _decision_kernel(m):
    key = ("decision", m)
    if key in _KERNELS:
        return _KERNELS[key]
    RB = _rows_per_batch(DECISION_ROWS, m)
    NPB = RB * m

    @cuda.jit
    def kernel(X, Wt, b, Z):
        n, k = X.shape
        lane = cuda.threadIdx.x % 32
        warp = cuda.threadIdx.x // 32
        p = cuda.local.array(NPB, np.float64)
        zr = cuda.local.array(m, np.float64)
        wj = cuda.local.array(m, np.float64)
        # the loop bound is the block's first row: uniform over the block, as the reduction needs
        step = NWARPS * RB
        for base in range(cuda.blockIdx.x * step, n, cuda.gridDim.x * step):
            row0 = base + warp * RB
            for q in range(NPB):
                p[q] = 0.0
            nv = n - row0
            for j in range(lane, k, 32):
                for c in range(m):
                    wj[c] = Wt[c, j]
                for rr in range(RB):              # clamped loads: see _tile_kernel
                    x = float(X[min(row0 + rr, n - 1), j])
                    x = x if rr < nv else 0.0
                    for c in range(m):
                        p[rr * m + c] += x * wj[c]
            _warp_allreduce(p, NPB)
            _select_row(p, m, RB, lane, zr)       # lane rr writes row rr of the batch
            i = row0 + lane
            if lane < RB and i < n:
                for c in range(m):
                    Z[i, c] = zr[c] + b[c]

    _KERNELS[key] = kernel
    return kernel


# --------------------------------------------------------------------------- host side
def _is_device(a):
    return hasattr(a, "copy_to_host")


def gpu_put(a):
    """Copy a host array to the device once (C-contiguous); device arrays pass through."""
    return a if _is_device(a) else cuda.to_device(np.ascontiguousarray(a))


def _data(X, T=None):
    if X.ndim != 2 or np.dtype(X.dtype) not in (np.float32, np.float64):
        raise ValueError("X must be a 2-D float32 or float64 array")
    if not _is_device(X) and not X.flags.c_contiguous:
        raise ValueError("X must be C-contiguous")
    Xd = gpu_put(X)
    if T is None:
        return Xd, None
    if not _is_device(T):
        T = np.ascontiguousarray(np.asarray(T, dtype=np.float64).reshape(X.shape[0], -1))
    if T.ndim != 2 or T.shape[0] != X.shape[0] or np.dtype(T.dtype) != np.float64:
        raise ValueError("T must be (n, m) float64 with the rows of X")
    return Xd, gpu_put(T)


def _params(X, W, b):
    W = np.asarray(W)
    b = np.asarray(b)
    if W.ndim != 2 or W.shape[0] != X.shape[1] or b.shape != (W.shape[1],):
        raise ValueError(f"W must be (k, m) = ({X.shape[1]}, m) and b (m,); got {W.shape}, "
                         f"{b.shape}")
    Wt = np.ascontiguousarray(W.T, dtype=np.float64)
    return cuda.to_device(Wt), cuda.to_device(np.ascontiguousarray(b, dtype=np.float64))


def _check_kind(kind):
    if kind not in (LINEAR, SIGMOID, SOFTMAX):
        raise ValueError(f"unknown kind {kind!r}; use LINEAR, SIGMOID or SOFTMAX")


def _grid(n):
    return max(1, min(MAX_BLOCKS, (n + TILE_ROWS - 1) // TILE_ROWS))


_BUFFERS = {}


def _buffers(nb, size):
    """Per-shape scratch (partials, sums), allocated once: a solver calls with the same shapes
    every iteration. This makes the host side not thread-safe (use processes, not threads)."""
    key = (nb, size)
    if key not in _BUFFERS:
        _BUFFERS[key] = (cuda.device_array((size, nb), dtype=np.float64),
                         cuda.device_array(size, dtype=np.float64))
    return _BUFFERS[key]


def _fused_pass(kind, Xd, Td, Wd, bd, Vd, vbd, m, hess):
    """Run the fused kernel and the combine; return the (m*(k+1) + 1,) host sums (not / n)."""
    n, k = Xd.shape
    size = m * (k + 1) + 1
    plan = _warp_plan(k, m, hess, Xd.dtype.itemsize)
    if plan is not None:
        kpl, rb = plan
        nb = max(1, min(WARP_BLOCKS, (n + NWARPS * rb - 1) // (NWARPS * rb)))
        partials, out = _buffers(nb * NWARPS, size)
        kernel = _warp_kernel(kind, m, kpl, rb, hess, Xd.dtype)
        kernel[nb, THREADS](Xd, Td, Wd, bd, Vd, vbd, partials)
    else:
        nb = _grid(n)
        kpt = (k + 1 + THREADS - 1) // THREADS
        partials, out = _buffers(nb, size)
        _tile_kernel(kind, m, kpt, hess)[nb, THREADS](Xd, Td, Wd, bd, Vd, vbd, partials)
    per_block = NWARPS * COMBINE_OUTPUTS
    _combine[(size + per_block - 1) // per_block, THREADS](partials, out)
    return out.copy_to_host()


def _unpack(sums, n, k, m, G_out, gb_out):
    scaled = sums[: m * (k + 1)].reshape(m, k + 1) / n
    G_out[...] = scaled[:, :k].T
    gb_out[...] = scaled[:, k]


def gpu_loss_grad(kind, X, T, W, b, G_out, gb_out):
    """Mean loss over rows; writes dL/dW into host ``G_out`` (k, m) and dL/db into ``gb_out``.

    ``kind`` is ``LINEAR``, ``SIGMOID`` or ``SOFTMAX`` (``kernels.losses``); ``X`` (n, k) and
    ``T`` (n, m) float64 (class index in column 0 for softmax) preferably device-resident.
    """
    _check_kind(kind)
    Xd, Td = _data(X, T)
    Wd, bd = _params(X, W, b)
    n, k = X.shape
    m = Wd.shape[0]
    sums = _fused_pass(kind, Xd, Td, Wd, bd, Wd, bd, m, False)
    _unpack(sums, n, k, m, G_out, gb_out)
    return float(sums[-1] / n)


def gpu_hessp(kind, X, W, b, V, vb, H_out, hb_out):
    """Hessian of the mean loss at (W, b) applied to (V, vb), into host ``H_out``, ``hb_out``."""
    _check_kind(kind)
    Xd, _ = _data(X)
    Wd, bd = _params(X, W, b)
    Vd, vbd = _params(X, V, vb)
    n, k = X.shape
    m = Wd.shape[0]
    # T is unused by the Hessian; any float64 2-D device array satisfies the signature
    sums = _fused_pass(kind, Xd, Wd, Wd, bd, Vd, vbd, m, True)
    _unpack(sums, n, k, m, H_out, hb_out)


def gpu_decision_function(X, W, b, Z_out=None):
    """Logits ``Z = X W + b`` (n, m) float64: a host array, or ``Z_out`` (host or device)."""
    Xd, _ = _data(X)
    Wd, bd = _params(X, W, b)
    n = X.shape[0]
    m = Wd.shape[0]
    Zd = Z_out if Z_out is not None and _is_device(Z_out) else \
        cuda.device_array((n, m), dtype=np.float64)
    nb = max(1, min(MAX_BLOCKS, (n + NWARPS * DECISION_ROWS - 1) // (NWARPS * DECISION_ROWS)))
    _decision_kernel(m)[nb, THREADS](Xd, Wd, bd, Zd)
    if Z_out is None:
        return Zd.copy_to_host()
    if not _is_device(Z_out):
        Z_out[...] = Zd.copy_to_host()
    return Z_out


# --------------------------------------------------------------------------- prox steps
@cuda.jit
def _prox_kernel(w, soft, thresh, scale):
    """Soft-threshold at ``thresh`` (if ``soft``), then multiply by ``scale``; grid-stride."""
    start = cuda.grid(1)
    for i in range(start, w.shape[0], cuda.gridsize(1)):
        v = w[i]
        if soft:
            if v > thresh:
                v = v - thresh
            elif v < -thresh:
                v = v + thresh
            else:
                v = 0.0
        w[i] = v * scale


def _prox(W_out, soft, thresh, scale):
    dev = W_out if _is_device(W_out) else cuda.to_device(np.ascontiguousarray(W_out))
    flat = dev.reshape(dev.size)
    blocks = max(1, min(1024, (dev.size + FLAT_THREADS - 1) // FLAT_THREADS))
    _prox_kernel[blocks, FLAT_THREADS](flat, soft, float(thresh), float(scale))
    if not _is_device(W_out):
        W_out[...] = dev.copy_to_host()


def gpu_prox_l1(W_out, thresh):
    """Soft-threshold every entry of ``W_out`` at ``thresh`` >= 0, in place."""
    _prox(W_out, True, thresh, 1.0)


def gpu_prox_l2(W_out, shrink):
    """Divide every entry of ``W_out`` by ``1 + shrink``, in place."""
    _prox(W_out, False, 0.0, 1.0 / (1.0 + shrink))


def gpu_prox_elasticnet(W_out, thresh, shrink):
    """Soft-threshold at ``thresh``, then divide by ``1 + shrink``, in place (one pass)."""
    _prox(W_out, True, thresh, 1.0 / (1.0 + shrink))
