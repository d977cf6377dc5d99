"""The same bits on every CPU of the supported kind: pin the libraries' CPU dispatch.

The kernels (``kernels/``) compute the same bits for any compile target. Two libraries on the
path still choose code per CPU at load time, and their choice changed results (issue 10;
measured with the fits of ``tests/test_portable_bits.py`` on an AVX-512 host):

- OpenBLAS (under numpy and scipy: L-BFGS-B's dot products, the solvers' ``solve``/``lstsq``
  and small products) picks per-CPU kernels, SkylakeX on an AVX-512 machine, Haswell or Zen on
  an AVX2 one. ``OPENBLAS_CORETYPE=Haswell`` makes every x86-64 with AVX2 and FMA run the
  Haswell kernels (SkylakeX's changed the weights of 18 of those 28 fits).
- numpy dispatches some ufuncs (``exp``, ``log``, ...) to AVX-512 code where the CPU has it.
  Disabling its AVX-512 targets makes an AVX-512 machine run the AVX2 code an AVX2 machine runs
  (with them, ``predict_proba`` of every softmax fit changed). numpy ignores a disabled target
  the CPU lacks, so this is safe on AVX2 machines.

Both are read once, when the library loads: :func:`pin_cpu_dispatch` runs first in
``pipeline/__init__.py``, so ``python -m pipeline`` and ``python -m pipeline.stages`` always
get them. A script that imports numpy before ``pipeline`` gets them only for the libraries
not loaded yet (scipy's OpenBLAS loads with ``scipy.linalg``): set the variables in the
environment, or import ``pipeline`` first. A value the user set wins; ``PIPELINE_PORTABLE=0``
leaves both alone (the host's own kernels: maybe faster, not the same bits elsewhere).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

# numpy >= 2.4 groups its x86 targets (baseline X86_V2, dispatch X86_V3, X86_V4, AVX512_ICL,
# AVX512_SPR); everything above X86_V3 (AVX2 + FMA) is AVX-512.
NUMPY_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"


def cpu_supported() -> bool:
    """True on a Linux x86-64 CPU with AVX2 and FMA (the kind the bits are pinned for)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {"avx2", "fma"} <= flags
    except OSError:
        pass
    return False


def _numpy_groups_targets() -> bool:
    try:
        major, minor = (int(p) for p in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (2, 4)


def pins() -> dict[str, str]:
    """The environment variables :func:`pin_cpu_dispatch` sets on this machine (may be none)."""
    if os.environ.get("PIPELINE_PORTABLE", "1") == "0" or not cpu_supported():
        return {}
    out = {"OPENBLAS_CORETYPE": "Haswell"}
    if _numpy_groups_targets():  # older numpy names its targets differently (not locked)
        out["NPY_DISABLE_CPU_FEATURES"] = NUMPY_AVX512
    return out


def pin_cpu_dispatch() -> None:
    """Set the pins in ``os.environ`` unless the user set them (call before numpy loads)."""
    for key, value in pins().items():
        os.environ.setdefault(key, value)


pin_cpu_dispatch()  # on import: ``pipeline/__init__.py`` imports this module first
