"""Fitting a file several times larger than a memory budget: a child process streams a 256 MB
``.npy`` file under a 64 MB budget on its peak resident memory and gets the in-memory bits.

The child measures its own peak RSS growth over a baseline taken after imports and kernel
compilation: Linux's ``/proc/self/clear_refs`` (5) resets the peak (VmHWM) there, so only the
streamed fit counts. ``RLIMIT_AS`` is not used: numba/LLVM reserve far more address space than
they touch. Pages of the file in the page cache are not the process's memory; pages of a memory
map are while they are mapped, which is why a streamed pass maps each chunk's rows alone and
unmaps them with the chunk (``pipeline.chunk_map``).
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

N, K, CHUNK = 1 << 20, 32, 16_384  # 256 MiB of float64 in 64 chunks of 4 MiB
BUDGET_MB = 64

CHILD = textwrap.dedent("""
    import gc, json, sys, warnings
    import numpy as np
    import pipeline
    import pipeline.streamed
    from pipeline.chunked import NpySource
    from pipeline.objectives import ArrayObjective
    from pipeline.penalties import Penalty
    from pipeline.solvers import SOLVERS, Problem
    from pipeline.validation import check_targets

    folder, chunk, solvers = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    pipeline.streamed.SAMPLE_BYTES = int(sys.argv[4])  # newton's Hessian sample: held below
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    fit = dict(model="logistic", reg="l2", lam=1e-3, tol=1e-8, max_iter=200)
    small = NpySource(f"{folder}/small_X.npy", f"{folder}/small_y.npy", chunk_rows=chunk)
    for s in solvers:  # compile (or load from numba's cache) every kernel the fits use
        pipeline.fit(small, None, solver=s, **fit)
    source = NpySource(f"{folder}/X.npy", f"{folder}/y.npy", chunk_rows=chunk)
    out = {"file_mb": source.nbytes / 2**20}
    for s in solvers:
        gc.collect()
        open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
        base = status("VmRSS")
        result = pipeline.fit(source, None, solver=s, **fit)
        out[s] = {"peak_mb": status("VmHWM") - base, "passes": result.n_passes,
                  "converged": result.converged, "W": result.W.ravel().tolist(),
                  "b": result.b.tolist()}
    X, y = np.load(f"{folder}/X.npy"), np.load(f"{folder}/y.npy")  # now in memory, to compare
    T, classes = check_targets("logistic", y, len(y))
    for s in solvers:
        obj = ArrayObjective("logistic", X, T, 2, chunk_rows=chunk)
        problem = Problem(obj, Penalty("l2", fit["lam"], 0.5, X.shape[1]), fit["tol"],
                          fit["max_iter"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = SOLVERS[s].fn(problem, *obj.zeros())
        out[s]["equal"] = (np.array_equal(np.array(out[s]["W"]).reshape(want.W.shape), want.W)
                           and np.array_equal(np.array(out[s]["b"]), want.b))
        out[s]["same_passes"] = want.n_passes == out[s]["passes"]
        out[s]["max_diff"] = float(np.abs(np.array(out[s]["W"]).reshape(want.W.shape)
                                          - want.W).max())
        del out[s]["W"], out[s]["b"]
    print(json.dumps(out))
""")


def _write_npy(path, n: int, k: int, seed: int, block: int = 100_000):
    """A standard-normal (n, k) float64 .npy file, written block by block (never whole in
    memory), and logistic labels from a random linear model with noise."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(k) / np.sqrt(k)
    labels = np.empty(n, dtype=np.int8)
    with open(path / "X.npy" if n == N else path / "small_X.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (n, k)})
        for lo in range(0, n, block):
            Xb = rng.standard_normal((min(block, n - lo), k))
            labels[lo:lo + len(Xb)] = (Xb @ w + 0.5 * rng.standard_normal(len(Xb)) > 0)
            fh.write(Xb.tobytes())
    np.save(path / ("y.npy" if n == N else "small_y.npy"), labels)


@pytest.mark.slow
def test_a_file_four_times_the_budget_fits_to_the_in_memory_bits(tmp_path):
    _write_npy(tmp_path, N, K, seed=0)
    _write_npy(tmp_path, 5_000, K, seed=1)
    out = _child(tmp_path, "lbfgs,prox_newton,newton", SAMPLE_BYTES)
    assert out["file_mb"] >= 4 * BUDGET_MB
    for solver in ("lbfgs", "prox_newton", "newton"):
        got = out[solver]
        assert got["converged"], (solver, got)
        assert got["peak_mb"] < BUDGET_MB, (solver, got)
    for solver in ("lbfgs", "prox_newton"):
        assert out[solver]["equal"] and out[solver]["same_passes"], (solver, out[solver])
    # newton's n / 20-row Hessian sample (52 429 rows, 12.8 MiB of X) is over SAMPLE_BYTES:
    # accumulated chunk by chunk, not held; the in-memory fit holds it (other rounding)
    assert out["newton"]["max_diff"] < 1e-6, out["newton"]
    assert out["newton"]["peak_mb"] < out["lbfgs"]["peak_mb"] + 6, out


@pytest.mark.slow
def test_newton_holding_its_hessian_sample_grows_by_the_sample(tmp_path):
    """The bound above (+6 MiB over lbfgs) can fail: with the 12.8 MiB sample held (the limit
    raised) newton's peak passes it (a fresh-clone CI run: +10.8 MiB, part of the sample
    overlapping lbfgs's own peak)."""
    _write_npy(tmp_path, N, K, seed=0)
    _write_npy(tmp_path, 5_000, K, seed=1)
    out = _child(tmp_path, "lbfgs,newton", 1 << 30)
    assert out["newton"]["equal"], out["newton"]
    assert out["newton"]["peak_mb"] > out["lbfgs"]["peak_mb"] + 8, out


SAMPLE_BYTES = 4 << 20


def _child(folder, solvers: str, sample_bytes: int) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(CHUNK), solvers,
                          str(sample_bytes)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    print(out)
    return out
