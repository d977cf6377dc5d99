"""Two LLVM operations numba does not expose, for the CPU kernels.

``prefetch`` (LLVM's ``llvm.prefetch``). Why: a fused pass alternates reading X with arithmetic
on rows already in cache; the pass ran 1.25-1.45x the time of a plain read of X, and our reading
(no hardware counters here) is that a computing core keeps too few cache lines in flight.
Asking for the next rows explicitly, while the current ones are being worked on, keeps the
memory busy (measurements in ``kernels/losses.py``).
A prefetch never faults and never changes a result; it only moves data into the cache early.

``int64_as_float64`` reinterprets the bits of an int64 as a float64, so that ``2**-k`` can be
built from its exponent bits inside one vectorised loop (a ``view`` needs a second array and a
second loop).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, i, j):
    """Hint that ``arr[i, j]`` (2-D, ``j`` may run past the row into the next ones) is read soon.

    The address is computed without bounds checks; callers keep it inside the array.
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 2):
        return None
    sig = types.void(arr, i, j)

    def codegen(context, builder, signature, args):
        aryty, ity, jty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[1], ity, types.intp),
               context.cast(builder, args[2], jty, types.intp)]
        ptr = cgutils.get_item_pointer2(
            context, builder, ary.data, cgutils.unpack_tuple(builder, ary.shape),
            cgutils.unpack_tuple(builder, ary.strides), aryty.layout, idx,
            wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read (0), keep in every cache level (3), data cache (1)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def int64_as_float64(typingctx, x):
    """The float64 whose bits are those of the int64 ``x`` (no conversion)."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(x), codegen
