"""The layout pass after conv2d's GEMM: (O, N*Ho*Wo) to contiguous NCHW, with the bias added on the way.

The reference (:class:`minidl.ops.conv.Conv2d`) transposes with a strided view, adds the bias
in place and copies to contiguous memory: two passes. Here it is one (0.18 ms instead of 0.31 ms
for a 32x16x32x32 output).

im2col and col2im stay numpy: numba versions were measured and lost. numpy's strided
``reshape`` copy gathers rows of 28-32 floats at memory speed (1.3 ms for the 19 MB of
columns of a 16-channel 3x3 convolution of 32 images of 32x32, against 3.3 ms for the best numba
loop nest tried), and the reference col2im, which folds in (C, N) order over contiguous slices,
ties with a numba loop (3.3 against 3.6 ms). See docs/performance.md.
"""

from __future__ import annotations

import numpy as np
from numba import void

from minidl.kernels.jit import contiguous, kernel
from minidl.kernels.jit import readonly as ro


@kernel(lambda f: void(ro(f[:, ::1]), ro(f[::1]), f[:, :, ::1]))
def _cnhw_to_nchw(src, bias, out):  # pragma: no cover (compiled)
    n, o, hw = out.shape
    for b in range(n):
        for k in range(o):
            add = bias[k]
            row = src[k, b * hw : (b + 1) * hw]
            dst = out[b, k]
            for q in range(hw):
                dst[q] = row[q] + add


def to_nchw(y: np.ndarray, bias: np.ndarray | None, n: int, ho: int, wo: int) -> np.ndarray:
    """The GEMM result ``(O, N*Ho*Wo)`` (any shape with that memory layout, e.g. ``(groups, O/groups,
    N*Ho*Wo)``) as a contiguous (N, O, Ho, Wo) array, plus ``bias`` (O,) when given."""
    y = contiguous(y)
    o = int(np.prod(y.shape[:-1]))
    y = y.reshape(o, n * ho * wo)
    b = np.zeros(o, y.dtype) if bias is None else contiguous(bias, dtype=y.dtype)
    out = np.empty((n, o, ho, wo), dtype=y.dtype)
    _cnhw_to_nchw(y, b, out.reshape(n, o, ho * wo))
    return out
