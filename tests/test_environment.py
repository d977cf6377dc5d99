"""The test process runs with the CPU-dispatch pins, as ``python -m pipeline`` does.

Tests compare a fit in this process with fits in child processes (dask workers, loky folds,
subprocesses for other CPU targets), which get the pins from the environment: if this process
loaded numpy's OpenBLAS before the pins were set, those comparisons would fail on BLAS rounding
(a pytest plugin that imports numpy first did that: pyproject's ``-p no:zarr``).
"""

import pytest

from pipeline import _portable


def test_openblas_runs_the_pinned_kernels_in_the_test_process():
    import threadpoolctl

    if "OPENBLAS_CORETYPE" not in _portable.pins():
        pytest.skip("no pins on this kind of machine (not an x86-64 with AVX2 and FMA)")
    info = [i for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"]
    assert info and all(i.get("architecture") == "Haswell" for i in info), info
