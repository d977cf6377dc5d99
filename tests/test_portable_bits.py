"""Bit for bit across CPUs of the supported kind (issue 10).

The kernels are compiled in two subprocesses for two CPU targets (this host as numba picks it,
and ``haswell``: AVX2 and FMA, no AVX-512; numba keeps the host's features unless
``NUMBA_CPU_FEATURES`` says otherwise, so both are set), each with a cache of its own. Each
prints a hash of every result of one script: loss and gradient, Hessian-vector products and
logits of every model (parallel kernels and their serial twins), the Gram matrices and the
logistic Hessian, and ``pipeline.fit`` of every model with a couple of penalties and the main
solvers, in float64 and float32, with the predicted probabilities and metrics. They must be
equal. On an AVX-512 host this compares two vector widths; on an AVX2 host two CPU models.

Compiling costs nearly all of the test's time (about 110 s of CPU per target, ``_loss_grad``
alone 40 s). The ``haswell`` run always compiles into a fresh cache of its own. The host run
loads from (and adds to) numba's default cache in ``kernels/__pycache__``, which the rest of
the suite fills with the same host kernels anyway, when that cache holds nothing compiled
before the last change to ``kernels/`` (see :func:`default_cache_is_current`); otherwise it
too compiles into a fresh cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import _portable

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import pipeline  # first: pins OpenBLAS's and numpy's CPU dispatch before numpy loads

import hashlib
import json
import warnings

import numpy as np
from numpy._core._multiarray_umath import __cpu_features__
from threadpoolctl import threadpool_info

import kernels
from kernels.gram import gram, logistic_hessian
from pipeline import metrics, predict, predict_proba

warnings.simplefilter("ignore")
out = {}


def put(name, *arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    out[name] = h.hexdigest()[:16]


rng = np.random.default_rng(11)
n, k, m = 5003, 45, 3  # several row blocks, a feature count that is not a multiple of 8
X64 = rng.standard_normal((n, k)) * rng.uniform(0.2, 3.0, k)
w_true = rng.standard_normal((k, m)) / np.sqrt(k)
# no BLAS in the data itself: element-wise products summed by numpy
Z = (X64[:, :, None] * w_true[None]).sum(axis=1) + 0.5 * rng.standard_normal((n, m))
targets = {"linear": Z[:, :2], "logistic": (Z[:, 0] > 0).astype(int),
           "softmax": Z.argmax(axis=1), "ovr": Z.argmax(axis=1),
           "multilabel": (Z > 0).astype(int)}
kernel_T = {"linear": Z[:, :2], "logistic": targets["logistic"][:, None] * 1.0,
            "softmax": targets["softmax"][:, None] * 1.0,
            "ovr": np.eye(m)[targets["ovr"]], "multilabel": targets["multilabel"] * 1.0}
TASK = {"logistic": "binary", "softmax": "multiclass", "ovr": "multiclass",
        "multilabel": "multilabel"}
FITS = [("linear", "l2", "closed_form"), ("linear", "l1", "cd"), ("linear", "elasticnet", "agd"),
        ("linear", "l2", "lbfgs"), ("logistic", "l2", "prox_newton"),
        ("logistic", "l1", "prox_newton"), ("logistic", "l2", "newton"),
        ("logistic", "l2", "lbfgs"), ("logistic", "elasticnet", "sgd"),
        ("softmax", "l2", "lbfgs"), ("softmax", "l1", "split_lbfgs"),
        ("softmax", "l2", "newton"), ("softmax", "l1", "prox_newton"), ("ovr", "l2", "lbfgs"),
        ("ovr", "l1", "gd"), ("multilabel", "l2", "lbfgs"), ("multilabel", "l1", "agd")]
FLOAT32_SOLVERS = ("lbfgs", "closed_form", "prox_newton", "cd")
for dtype in ("float64", "float32"):
    X = np.ascontiguousarray(X64.astype(dtype))
    for model, T in kernel_T.items():
        kind = kernels.KINDS[model]
        mm = m if model == "softmax" else T.shape[1]  # softmax: T holds the class index
        W, b = 0.3 * rng.standard_normal((k, mm)), 0.3 * rng.standard_normal(mm)
        V, vb = rng.standard_normal((k, mm)), rng.standard_normal(mm)
        for rows in (n, 700):  # the parallel kernels and their serial twins
            Xr, Tr = X[:rows], np.ascontiguousarray(T[:rows])
            G, gb = np.empty_like(W), np.empty_like(b)
            loss = kernels.loss_grad(kind, Xr, Tr, W, b, G, gb)
            put(f"{dtype}/{model}/{rows}/loss_grad", [loss], G, gb)
            H, hb = np.empty_like(W), np.empty_like(b)
            kernels.hessp(kind, Xr, W, b, V, vb, H, hb)
            put(f"{dtype}/{model}/{rows}/hessp", H, hb)
            put(f"{dtype}/{model}/{rows}/decision", kernels.decision_function(Xr, W, b))
        put(f"{dtype}/{model}/gram", *gram(X, T))
    put(f"{dtype}/logistic_hessian", logistic_hessian(X, rng.standard_normal(k), 0.3))
    for model, reg, solver in FITS:
        if dtype == "float32" and solver not in FLOAT32_SOLVERS:
            continue
        r = pipeline.fit(X, targets[model], model=model, reg=reg, lam=0.02, solver=solver,
                         max_iter=40, dtype=dtype, tol=1e-10)
        name = f"{dtype}/fit/{model}/{reg}/{solver}"
        put(name, r.W, r.b, [r.objective, r.n_iter], r.history)
        if model != "linear":
            y, pred = targets[model], predict(r, X)
            P = predict_proba(r, X)
            s = (metrics.score(TASK[model], y, pred) if model == "multilabel"
                 else metrics.score(TASK[model], y, pred, P))
            put(name + "/proba+metrics", P, [s[key] for key in sorted(s)])
blas = sorted({i.get("architecture", "?") for i in threadpool_info() if i["user_api"] == "blas"})
print(json.dumps({"hashes": out, "blas": blas, "numpy_avx512": __cpu_features__["X86_V4"]}))
'''

# LLVM's haswell: x86-64-v3 (AVX2, FMA, BMI, ...) and nothing of AVX-512.
HASWELL = {"64bit", "cmov", "cx8", "cx16", "fxsr", "mmx", "sse", "sse2", "sse3", "ssse3",
           "sse4.1", "sse4.2", "popcnt", "sahf", "crc32", "avx", "avx2", "bmi", "bmi2", "f16c",
           "fma", "lzcnt", "movbe", "xsave", "xsaveopt", "pclmul", "aes", "fsgsbase", "rdrnd",
           "invpcid"}


def host_features() -> dict[str, bool]:
    import llvmlite.binding as ll

    return dict(ll.get_host_cpu_features())


def haswell_env(host: dict[str, bool]) -> dict[str, str]:
    """numba's target options for haswell: every host feature named, on only where haswell has
    it (so nothing the host lacks is ever switched on, and AVX-512 is off)."""
    feats = ",".join(("+" if on and name in HASWELL else "-") + name
                     for name, on in sorted(host.items()))
    return {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": feats}


def default_cache_is_current() -> bool:
    """Whether every kernel in numba's default cache was compiled after the newest file of
    ``kernels/`` was written.

    numba checks a cache entry only against its own source file, so an entry of gram.py that
    inlined losses.py's exp can outlive a change to losses.py. An entry written after the last
    change to any kernel file was compiled from the current sources: a fresh clone (CI), and
    every run after it, qualifies; an edit to ``kernels/`` disqualifies the cache until its
    older entries are gone. A ``NUMBA_CACHE_DIR`` of the user's, or a read-only tree, puts the
    cache elsewhere: not checked, not used.
    """
    pycache = ROOT / "kernels" / "__pycache__"
    if os.environ.get("NUMBA_CACHE_DIR") or not os.access(pycache if pycache.exists()
                                                            else pycache.parent, os.W_OK):
        return False  # numba's cache is elsewhere (a read-only tree: under the home folder)
    newest = max(p.stat().st_mtime_ns for p in (ROOT / "kernels").glob("*.py"))
    return all(p.stat().st_mtime_ns > newest
               for p in pycache.glob("*.nb[ci]"))


def start(extra: dict[str, str], cache: Path | None) -> subprocess.Popen:
    """The script in a child for numba's target options ``extra``, compiling into ``cache``
    (None: numba's default cache)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    for key in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):
        if key not in extra:
            env.pop(key, None)
    env.pop("NUMBA_CACHE_DIR", None)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    return subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def result(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-4000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_cpu_targets_give_the_same_bits(tmp_path):
    host = host_features()
    if not (host.get("avx2") and host.get("fma")) or not _portable.cpu_supported():
        pytest.skip("not a CPU of the supported kind (x86-64 with AVX2 and FMA)")
    # Both at once. numba keys a cache file by its own source file only, so a kernel inlining
    # a function of another file (gram.py uses losses.py's exp) may load code older than that
    # function from a shared cache: the host run uses the default cache only when nothing in it
    # predates the kernels' sources. haswell always compiles into a fresh cache: no other test
    # compiles for it, and two processes adding entries of different targets to one index at
    # once could pair a name with the wrong target's code.
    host_cache = None if default_cache_is_current() else tmp_path / "host"
    if host_cache is not None:
        host_cache.mkdir()
    (tmp_path / "haswell").mkdir()
    procs = {"host": start({}, host_cache),
             "haswell": start(haswell_env(host), tmp_path / "haswell")}
    res = {name: result(p) for name, p in procs.items()}
    a, b = res["host"]["hashes"], res["haswell"]["hashes"]
    assert len(a) == 119 and a.keys() == b.keys()
    differ = sorted(key for key in a if a[key] != b[key])
    assert not differ, f"{len(differ)} of {len(a)} results differ between targets: {differ}"
    for r in res.values():  # the pins were in force in both
        assert r["blas"] == ["Haswell"] and r["numpy_avx512"] is False


def test_the_default_cache_counts_as_current_only_when_newer_than_every_kernel_file(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "kernels" / "__pycache__").mkdir(parents=True)
    old, new = tmp_path / "kernels" / "a.py", tmp_path / "kernels" / "b.py"
    entry = tmp_path / "kernels" / "__pycache__" / "a.f-1.py311.1.nbc"
    for path, t in ((old, 1_000), (entry, 2_000), (new, 1_500)):
        path.write_text("")
        os.utime(path, (t, t))
    assert default_cache_is_current()  # nothing cached before b.py's last change
    os.utime(new, (3_000, 3_000))  # b.py edited after the entry was compiled
    assert not default_cache_is_current()
    os.utime(new, (1_500, 1_500))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not default_cache_is_current()


def test_pins_only_on_the_supported_kind_and_a_users_value_wins(monkeypatch):
    monkeypatch.setattr(_portable, "cpu_supported", lambda: True)
    monkeypatch.delenv("PIPELINE_PORTABLE", raising=False)
    assert _portable.pins()["OPENBLAS_CORETYPE"] == "Haswell"
    assert set(_portable.pins()) <= {"OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES"}
    monkeypatch.setenv("PIPELINE_PORTABLE", "0")
    assert _portable.pins() == {}
    monkeypatch.delenv("PIPELINE_PORTABLE")
    monkeypatch.setattr(_portable, "cpu_supported", lambda: False)
    assert _portable.pins() == {}
    monkeypatch.setattr(_portable, "cpu_supported", lambda: True)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Zen")
    _portable.pin_cpu_dispatch()
    assert os.environ["OPENBLAS_CORETYPE"] == "Zen"


def test_cli_processes_start_with_the_pins():
    """``python -m pipeline`` imports the package first, so the pins are set before numpy
    loads; the libraries report them."""
    if not _portable.cpu_supported():
        pytest.skip("not a CPU of the supported kind (x86-64 with AVX2 and FMA)")
    env = {key: value for key, value in os.environ.items()
           if key not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "PIPELINE_PORTABLE")}
    code = ("import pipeline, scipy.linalg, json; from threadpoolctl import threadpool_info; "
            "from numpy._core._multiarray_umath import __cpu_features__ as f; "
            "print(json.dumps([sorted({i['architecture'] for i in threadpool_info()}), "
            "f['X86_V4'], f['X86_V3']]))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, PYTHONPATH=str(ROOT)),
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [["Haswell"], False, True]
