"""numpy's own BLAS GEMM, callable from numba kernels: a whole loop of im2col + GEMM in one ``nogil`` call.

conv2d's row-layout loop is per image: a copy into columns, one small GEMM, a copy out. Driven from
Python, each image costs about ten numpy calls, and at two threads each call is a hand-off of the
GIL between the threads. Called from a kernel, the loop runs without the GIL from start to end.

The GEMM is the ``cblas_?gemm`` of the OpenBLAS numpy loaded (found with threadpoolctl, the same
library and thread setting numpy's matmul uses), called through its address, passed to the kernel
as an integer: a kernel holding a ctypes function would bake the address in, and numba cannot
cache such a kernel on disk (the address changes from process to process). Only OpenBLAS builds
with 64-bit integers (numpy's wheels: ``scipy_cblas_sgemm64_``) are used; with any other BLAS
:func:`gemm_address` returns 0 and callers keep their numpy path.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# symbol names per dtype, 64-bit integer interface only
_SYMBOLS = {
    "float32": ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
    "float64": ("scipy_cblas_dgemm64_", "cblas_dgemm64_"),
}
_addresses: dict[str, int] = {}
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def gemm_address(dtype: Any) -> int:
    """The address of numpy's OpenBLAS ``cblas_?gemm`` (64-bit integers) for ``dtype``, or 0 if there is none."""
    name = np.dtype(dtype).name
    if name not in _addresses:
        _addresses[name] = _find(name)
    return _addresses[name]


def _find(name: str) -> int:
    if name not in _SYMBOLS:
        return 0
    from minidl.kernels.blas_threads import _blas_controllers

    for lib in _blas_controllers():
        if lib.internal_api != "openblas":
            continue
        try:
            handle = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for symbol in _SYMBOLS[name]:
            fn = getattr(handle, symbol, None)
            if fn is not None:
                return ctypes.cast(fn, ctypes.c_void_p).value or 0
    return 0


@intrinsic
def gemm(typingctx, address, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):  # pragma: no cover (compiled)
    """``c`` (m x n, row stride ``ldc``) := ``a`` (m x k, row stride ``lda``) @ ``b`` (k x n), or @ ``b``
    transposed (``b`` stored n x k) when ``trans_b``, plus ``beta`` (an integer, 0 or 1) times ``c``;
    row-major, through the ``cblas_?gemm`` at ``address``.

    ``a``, ``b``, ``c`` are arrays of one float dtype, read from their first element on.
    """
    if not all(isinstance(x, types.Array) for x in (a, b, c)) or len({a.dtype, b.dtype, c.dtype}) != 1:
        return None
    if a.dtype not in (types.float32, types.float64):
        return None
    sig = types.void(address, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc)
    real = ir.FloatType() if a.dtype == types.float32 else ir.DoubleType()

    def codegen(context, builder, signature, args):
        i32, i64, ptr = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64])
        argtypes = signature.args

        def integer(i):
            return context.cast(builder, args[i], argtypes[i], types.int64)

        def data(i):
            return builder.bitcast(context.make_array(argtypes[i])(context, builder, args[i]).data, ptr)

        fn = builder.inttoptr(integer(0), fnty.as_pointer())
        transposed = builder.icmp_signed("!=", integer(1), i64(0))
        op_b = builder.select(transposed, i32(_TRANS), i32(_NO_TRANS))
        one, beta = ir.Constant(real, 1.0), builder.sitofp(integer(9), real)
        builder.call(
            fn,
            [i32(_ROW_MAJOR), i32(_NO_TRANS), op_b, integer(2), integer(3), integer(4), one, data(5), integer(6)]
            + [data(7), integer(8), beta, data(10), integer(11)],
        )
        return context.get_dummy_value()

    return sig, codegen
