"""Benchmark and parity check of the CUDA kernels (``kernels/gpu.py``) on a machine with a GPU.

    python bench/gpu.py                      # n = 2e7 rows x k = 100 features, float32
    python bench/gpu.py --n 1000000 --reps 5
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu.py --n 256 --k 8 --reps 1   # smoke test, no GPU

What it measures, in one run on one device:

1. parity: ``gpu_loss_grad`` / ``gpu_hessp`` on float32 ``X`` against a float64 NumPy reference
   computed on the same values (chunked on the host); the relative error of the loss, gradient
   and Hessian-vector product must be <= 1e-5 (exit status 1 otherwise);
2. the device's copy bandwidth (device-to-device copy, read + write bytes over time);
3. the time of one fused pass (the whole call: W upload, kernel, combine, result download) and
   its effective read bandwidth ``bytes(X) / time`` as a fraction of the copy bandwidth;
4. the same logistic gradient with PyTorch or CuPy (``z = X @ w``, ``X.T @ (sigmoid(z) - y)``:
   two passes over X) on the same device arrays, when either is installed.
"""

import argparse
import statistics
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from numba.core.errors import NumbaWarning

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numba import cuda  # noqa: E402
from numba.cuda.random import (  # noqa: E402
    create_xoroshiro128p_states,
    xoroshiro128p_uniform_float32,
)

# kernels.gpu raises an ImportError that names the fix when there is no usable GPU
from kernels import LINEAR, SIGMOID, SOFTMAX, gpu  # noqa: E402

if gpu.SIMULATOR:  # the simulator runs numba.cuda.random's CPU helpers in object mode
    warnings.filterwarnings("ignore", category=NumbaWarning)
    warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning)

TOL = 1e-5
KIND_NAMES = {LINEAR: "linear", SIGMOID: "logistic", SOFTMAX: "softmax"}


# --------------------------------------------------------------------------- data
@cuda.jit
def _fill(X, states):
    """X[i, j] uniform on [-sqrt 3, sqrt 3) (unit variance); one RNG stream per thread."""
    t = cuda.grid(1)
    n, k = X.shape
    for i in range(t, n, cuda.gridsize(1)):
        for j in range(k):
            u = xoroshiro128p_uniform_float32(states, t)
            X[i, j] = (u * np.float32(2.0) - np.float32(1.0)) * np.float32(1.7320508)


def make_data(n, k, seed=0):
    """float32 X generated on the device (no 8 GB host array, no upload)."""
    X = cuda.device_array((n, k), dtype=np.float32)
    threads, blocks = 128, max(1, min(1024, (n + 127) // 128))
    states = create_xoroshiro128p_states(threads * blocks, seed=seed)
    _fill[blocks, threads](X, states)
    cuda.synchronize()
    return X


def targets(kind, n, m, seed=1):
    rng = np.random.default_rng(seed)
    if kind == SOFTMAX:
        return rng.integers(0, m, size=(n, 1)).astype(np.float64)
    if kind == SIGMOID:
        return (rng.random((n, m)) < 0.5).astype(np.float64)
    return rng.standard_normal((n, m))


# --------------------------------------------------------------------------- reference
def _dz(kind, Z, T):
    if kind == LINEAR:
        return ((Z - T) ** 2).sum(), 2.0 * (Z - T)
    if kind == SIGMOID:
        return (np.logaddexp(0.0, Z) - T * Z).sum(), 0.5 * (1.0 + np.tanh(0.5 * Z)) - T
    zmax = Z.max(axis=1, keepdims=True)
    E = np.exp(Z - zmax)
    s = E.sum(axis=1, keepdims=True)
    rows, y = np.arange(Z.shape[0]), T[:, 0].astype(np.int64)
    D = E / s
    D[rows, y] -= 1.0
    return (zmax[:, 0] + np.log(s[:, 0]) - Z[rows, y]).sum(), D


def _hz(kind, Z, U):
    if kind == LINEAR:
        return 2.0 * U
    if kind == SIGMOID:
        p = 0.5 * (1.0 + np.tanh(0.5 * Z))
        return U * p * (1.0 - p)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    P = E / E.sum(axis=1, keepdims=True)
    return P * (U - (P * U).sum(axis=1, keepdims=True))


def reference(kind, Xd, T, W, b, V, vb, chunk=1 << 20):
    """float64 loss, gradient and Hessian-vector product on the float32 values of ``Xd``."""
    n, k = Xd.shape
    m = W.shape[1]
    loss, G, gb, H, hb = 0.0, np.zeros((k, m)), np.zeros(m), np.zeros((k, m)), np.zeros(m)
    for lo in range(0, n, chunk):
        X = Xd[lo:lo + chunk].copy_to_host().astype(np.float64)
        Z = X @ W + b
        lc, D = _dz(kind, Z, T[lo:lo + chunk])
        E = _hz(kind, Z, X @ V + vb)
        loss, G, gb = loss + lc, G + X.T @ D, gb + D.sum(axis=0)
        H, hb = H + X.T @ E, hb + E.sum(axis=0)
    return loss / n, G / n, gb / n, H / n, hb / n


def rel(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# --------------------------------------------------------------------------- timing
def timed(fn, reps):
    """Median wall time (s) of ``fn()`` after one warm-up call; the device is synchronised."""
    fn()
    cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(Xd, reps, max_bytes=2 << 30):
    """Device-to-device copy of (up to 2 GiB of) X: bytes read + written per second."""
    rows = max(1, min(Xd.shape[0], max_bytes // (Xd.shape[1] * Xd.dtype.itemsize)))
    src = Xd[:rows]
    dst = cuda.device_array_like(src)
    t = timed(lambda: dst.copy_to_device(src), reps)
    return 2 * src.nbytes / t


def torch_or_cupy_pass(Xd, y, w, b, reps):
    """(name, seconds) of the logistic gradient with torch or cupy, or None if neither exists."""
    try:
        import torch
        if not torch.cuda.is_available():
            raise ImportError
        X = torch.as_tensor(Xd, device="cuda")     # zero-copy via __cuda_array_interface__
        wt = torch.as_tensor(w, dtype=torch.float32, device="cuda").reshape(-1, 1)
        yt = torch.as_tensor(y, dtype=torch.float32, device="cuda").reshape(-1, 1)

        def step():
            r = torch.sigmoid(X @ wt + b) - yt
            return X.T @ r

        def run():
            step()
            torch.cuda.synchronize()
        return f"torch {torch.__version__}", timed(run, reps)
    except ImportError:
        pass
    try:
        import cupy as cp
        X = cp.asarray(Xd)
        wc = cp.asarray(w, dtype=cp.float32).reshape(-1, 1)
        yc = cp.asarray(y, dtype=cp.float32).reshape(-1, 1)

        def run():
            z = X @ wc + b
            r = 1.0 / (1.0 + cp.exp(-z)) - yc
            X.T @ r
            cp.cuda.runtime.deviceSynchronize()
        return f"cupy {cp.__version__}", timed(run, reps)
    except ImportError:
        return None


def sweep_plans(Xd, specs, reps):
    """Time the register kernel under other PREFETCH / X_REGISTERS settings (m = 1)."""
    n, k = Xd.shape
    rng = np.random.default_rng(5)
    W, b = rng.standard_normal((k, 1)) * 0.1, rng.standard_normal(1) * 0.1
    G, gb = np.empty((k, 1)), np.empty(1)
    saved = gpu.PREFETCH, gpu.X_REGISTERS
    for kind in (SIGMOID, LINEAR):
        Td = cuda.to_device(targets(kind, n, 1))
        want = gpu.gpu_loss_grad(kind, Xd, Td, W, b, G, gb)
        for spec in specs.split(","):
            pf, xr = (int(v) for v in spec.split(":"))
            gpu.PREFETCH, gpu.X_REGISTERS = bool(pf), xr
            plan = gpu._warp_plan(k, 1, False, Xd.dtype.itemsize)
            rb = plan[1] if plan else "tile kernel"
            t = timed(partial(gpu.gpu_loss_grad, kind, Xd, Td, W, b, G, gb), reps)
            got = gpu.gpu_loss_grad(kind, Xd, Td, W, b, G, gb)
            print(f"  {KIND_NAMES[kind]}: prefetch {pf}, x registers {xr} (rows/batch {rb}): "
                  f"{t * 1e3:.3f} ms, loss rel diff {rel(got, want):.1e}", flush=True)
            gpu.PREFETCH, gpu.X_REGISTERS = saved


# --------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--m-softmax", type=int, default=4)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--sweep-blocks", default="",
                    help="comma-separated grid sizes of the register kernel to time (logistic)")
    ap.add_argument("--sweep-plans", default="",
                    help="comma-separated PREFETCH:X_REGISTERS settings of the register kernel "
                         "to time (logistic and linear, m = 1), e.g. 1:64,0:64,0:128")
    args = ap.parse_args(argv)
    n, k = args.n, args.k
    print(f"device: {gpu.cuda_available()[1]}; n = {n}, k = {k}, float32 X "
          f"({n * k * 4 / 1e9:.2f} GB)")
    Xd = make_data(n, k)
    bw = copy_bandwidth(Xd, args.reps)
    xbytes = Xd.nbytes
    print(f"copy bandwidth (device-to-device, read + write): {bw / 1e9:.0f} GB/s", flush=True)
    rng = np.random.default_rng(2)
    rows, ok = [], True
    for kind, m in ((SIGMOID, 1), (LINEAR, 1), (SOFTMAX, args.m_softmax)):
        W, b = rng.standard_normal((k, m)) * 0.1, rng.standard_normal(m) * 0.1
        V, vb = rng.standard_normal((k, m)), rng.standard_normal(m)
        T = targets(kind, n, m)
        Td = cuda.to_device(T)
        G, gb, H, hb = np.empty((k, m)), np.empty(m), np.empty((k, m)), np.empty(m)
        loss = gpu.gpu_loss_grad(kind, Xd, Td, W, b, G, gb)
        gpu.gpu_hessp(kind, Xd, W, b, V, vb, H, hb)
        rl, rG, rgb, rH, rhb = reference(kind, Xd, T, W, b, V, vb)
        err_lg = max(rel(loss, rl), rel(G, rG), rel(gb, rgb))
        err_h = max(rel(H, rH), rel(hb, rhb))
        ok &= err_lg <= TOL and err_h <= TOL
        t_lg = timed(partial(gpu.gpu_loss_grad, kind, Xd, Td, W, b, G, gb), args.reps)
        t_h = timed(partial(gpu.gpu_hessp, kind, Xd, W, b, V, vb, H, hb), args.reps)
        plan = gpu._warp_plan(k, m, False, 4)
        name = f"{KIND_NAMES[kind]} m={m}" + ("" if plan else " (tile)")
        rows.append((f"gpu_loss_grad {name}", t_lg, err_lg))
        rows.append((f"gpu_hessp {name}", t_h, err_h))
        print(f"  {name}: loss_grad {t_lg * 1e3:.3f} ms (rel err {err_lg:.1e}), "
              f"hessp {t_h * 1e3:.3f} ms (rel err {err_h:.1e})", flush=True)
        if kind == SIGMOID:
            small = min(n, 1024)
            t_small = timed(partial(gpu.gpu_loss_grad, kind, Xd[:small], Td[:small], W, b, G, gb),
                            args.reps)
            print(f"  fixed cost of a call (n = {small}): {t_small * 1e3:.3f} ms", flush=True)
            for blocks in filter(None, args.sweep_blocks.split(",")):
                saved, gpu.WARP_BLOCKS = gpu.WARP_BLOCKS, int(blocks)
                t = timed(partial(gpu.gpu_loss_grad, kind, Xd, Td, W, b, G, gb), args.reps)
                print(f"  register kernel, {blocks} blocks: {t * 1e3:.3f} ms", flush=True)
                gpu.WARP_BLOCKS = saved
            other = torch_or_cupy_pass(Xd, T[:, 0], W[:, 0], float(b[0]), args.reps)
            if other is None:
                print("torch / cupy not installed (or no GPU for them): skipping that row")
            else:
                rows.append((f"{other[0]}: X@w, X.T@r", other[1], float("nan")))
        del Td
    if args.sweep_plans:
        sweep_plans(Xd, args.sweep_plans, args.reps)
    print(f"\n{'pass':<36}{'ms':>10}{'X GB/s':>10}{'% copy':>9}{'rel err':>11}")
    for name, t, err in rows:
        xbw = xbytes / t
        print(f"{name:<36}{t * 1e3:>10.3f}{xbw / 1e9:>10.0f}{100 * xbw / bw:>8.0f}%"
              f"{err:>11.1e}")
    print(f"\nparity (rel err <= {TOL:g} vs float64 reference): {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
