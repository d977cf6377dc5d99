"""Compile flags and block sizes for every CPU kernel, in one place.

No fast-math flags on the kernels: with ``reassoc`` / ``contract`` LLVM chose the summation
order and which products to fuse from the compile target, so an AVX2 and an AVX-512 machine
gave different last bits (issue 10). The kernels spell out their lanes, their order and their
fused multiply-adds instead (``kernels/losses.py``), so the bits depend on neither the target
nor the thread count: the row-block size, not the thread count, fixes the summation order.
"""

import os

# numba's OpenMP workers spin after each parallel region by default. The solvers alternate
# kernel passes with scipy / numpy BLAS calls whose own threads then fight the spinning workers
# for the cores: on 2 cores a 0.3 ms pass took 6 ms and L-BFGS-B's step 2 ms (30x slower in
# all). Sleeping workers cost microseconds to wake. Read when the OpenMP runtime loads, i.e. at
# the first parallel kernel call, so setting it here is early enough; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Only for the bandwidth probe ``losses.read_sum`` (a benchmark floor, never a result).
PROBE_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
CACHE = True
# Rows per parallel block: each block owns one partial sum; partials are combined in block order.
BLOCK_ROWS = 2048
# Rows per sub-block inside a block (several outputs): logits, one vectorised exp/log sweep,
# then the gradient from the rows still in cache.
SUB_ROWS = 64
# Bytes of X per sub-block for one output (linear, logistic): small enough that this sub-block
# and the prefetched next one stay in a 48 KiB L1 (16 rows at 100 float64 features).
SUB_BYTES = 16384
