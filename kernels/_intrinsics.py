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


@intrinsic
def float64_as_int64(typingctx, x):
    """The int64 whose bits are those of the float64 ``x`` (no conversion)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(x), codegen


def _llvm_fma(builder, width=None):
    f64 = ir.DoubleType()
    ty = f64 if width is None else ir.VectorType(f64, width)
    name = "llvm.fma.f64" if width is None else f"llvm.fma.v{width}f64"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``llvm.fma``), every argument taken as float64.

    Why explicit: with the ``contract`` fast-math flag LLVM decides per instruction whether to
    fuse, and that choice may differ between vector widths; ``llvm.fma`` always fuses, on every
    target that has FMA (all of the supported kind), and the loop vectoriser still widens it.
    """
    if not all(isinstance(t, (types.Float, types.Integer)) for t in (a, b, c)):
        return None
    sig = types.float64(a, b, c)

    def codegen(context, builder, signature, args):
        vals = [context.cast(builder, v, t, types.float64)
                for v, t in zip(args, signature.args, strict=True)]
        return builder.call(_llvm_fma(builder), vals)

    return sig, codegen


LANES = 8  # partial sums per dot product: lane l takes the products j = l (mod LANES)


def _lane_tree(builder, vec):
    """((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)): a fixed order for any target."""
    vals = [builder.extract_element(vec, ir.Constant(ir.IntType(32), q)) for q in range(LANES)]
    while len(vals) > 1:
        vals = [builder.fadd(vals[q], vals[q + 1]) for q in range(0, len(vals), 2)]
    return vals[0]


def _row_dots(rows):
    """An intrinsic: the dot products of ``rows`` consecutive rows of X with one row of W."""

    def typer(typingctx, X, i, W, c):
        ok = (isinstance(X, types.Array) and X.ndim == 2 and X.layout == "C"
              and X.dtype in (types.float32, types.float64)
              and isinstance(W, types.Array) and W.ndim == 2 and W.layout == "C"
              and W.dtype == types.float64)
        if not ok:
            return None
        ret = types.float64 if rows == 1 else types.UniTuple(types.float64, rows)
        return ret(X, i, W, c), lambda *a: _row_dots_codegen(rows, *a)

    typer.__name__ = f"row_dots{rows}"
    return intrinsic(typer)


def _row_dots_codegen(rows, context, builder, signature, args):
    """Vector loop over the first ``k - k % LANES`` features with one ``<LANES x double>``
    accumulator per row (explicit ``llvm.fma`` on vectors: AVX2 runs it as two 4-wide halves,
    AVX-512 as one 8-wide register, lane for lane the same operations), the lanes summed in a
    fixed tree, then the remaining features added one by one with a scalar fma."""
    xty, ity, wty, cty = signature.args
    X = context.make_array(xty)(context, builder, args[0])
    W = context.make_array(wty)(context, builder, args[2])
    intp = context.get_value_type(types.intp)
    i = context.cast(builder, args[1], ity, types.intp)
    c = context.cast(builder, args[3], cty, types.intp)
    k = cgutils.unpack_tuple(builder, X.shape)[1]
    f64 = ir.DoubleType()
    vty = ir.VectorType(f64, LANES)
    elt = context.get_value_type(xty.dtype)
    wrow = builder.gep(W.data, [builder.mul(c, k)], inbounds=True)
    xrows = [builder.gep(X.data, [builder.mul(builder.add(i, ir.Constant(intp, r)), k)],
                         inbounds=True) for r in range(rows)]
    zero = ir.Constant(intp, 0)
    k_vec = builder.sub(k, builder.srem(k, ir.Constant(intp, LANES)))
    accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * LANES))
            for _ in range(rows)]
    vfma = _llvm_fma(builder, LANES)
    with cgutils.for_range_slice(builder, zero, k_vec, ir.Constant(intp, LANES)) as (j, _):
        wv = builder.load(builder.bitcast(builder.gep(wrow, [j], inbounds=True),
                                          vty.as_pointer()), align=8)
        for r in range(rows):
            p = builder.gep(xrows[r], [j], inbounds=True)
            xv = builder.load(builder.bitcast(p, ir.VectorType(elt, LANES).as_pointer()),
                              align=xty.dtype.bitwidth // 8)
            if xty.dtype == types.float32:
                xv = builder.fpext(xv, vty)
            builder.store(builder.call(vfma, [xv, wv, builder.load(accs[r])]), accs[r])
    sums = [cgutils.alloca_once_value(builder, _lane_tree(builder, builder.load(a)))
            for a in accs]
    sfma = _llvm_fma(builder)
    with cgutils.for_range_slice(builder, k_vec, k, ir.Constant(intp, 1)) as (j, _):
        wj = builder.load(builder.gep(wrow, [j], inbounds=True))
        for r in range(rows):
            xj = builder.load(builder.gep(xrows[r], [j], inbounds=True))
            if xty.dtype == types.float32:
                xj = builder.fpext(xj, f64)
            builder.store(builder.call(sfma, [xj, wj, builder.load(sums[r])]), sums[r])
    out = [builder.load(s) for s in sums]
    if rows == 1:
        return out[0]
    return context.make_tuple(builder, signature.return_type, out)


# Row i of X (C-contiguous, float32 or float64) against row c of W (C-contiguous float64), and
# rows i..i+3 against it: a fixed summation order whatever the compile target (no
# reassociation is left to LLVM). Bounds are not checked: callers keep i + rows <= n.
row_dot = _row_dots(1)
row_dots4 = _row_dots(4)
