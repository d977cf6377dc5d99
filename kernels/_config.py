"""Compile flags and block sizes for every CPU kernel, in one place.

``FASTMATH`` allows reassociation and fused multiply-add (so reductions vectorise) but keeps
IEEE inf/nan semantics, which the stable loss forms rely on. Results stay bit-identical for any
thread count because the row-block size, not the thread count, fixes the summation order.
"""

FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
CACHE = True
# Rows per parallel block: each block owns one partial sum; partials are combined in block order.
BLOCK_ROWS = 2048
# Rows per sub-block inside a block: logits, then one vectorised exp/log sweep, then gradient.
SUB_ROWS = 64
