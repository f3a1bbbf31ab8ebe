"""Softmax over the last axis, forward and backward, one row at a time.

The reference (:class:`minidl.ops.softmax.Softmax`) makes five passes with temporaries forward
(max, subtract, exp, sum, divide) and four backward, over rows as short as an attention
sequence (16 here). Measured on 64k float32 in 16-wide rows: forward 0.23 against 0.51 ms
(``exp`` in the array's dtype: ``expf``, as numpy uses, but one element at a time where numpy's
is vectorised), backward 0.04 against 0.12 ms.
"""

from __future__ import annotations

import math

import numpy as np
from numba import void

from minidl.kernels.jit import contiguous, kernel
from minidl.kernels.jit import readonly as ro


@kernel(lambda f: void(ro(f[:, ::1]), f, f[:, ::1]))
def _softmax(x, zero, out):  # pragma: no cover (compiled)
    m, n = x.shape
    for i in range(m):
        row, dst = x[i], out[i]
        top = row[0]
        for k in range(1, n):
            top = max(top, row[k])
        if not math.isfinite(top):  # the reference shifts by 0 when the maximum is inf or nan
            top = zero
        total = 0.0
        for k in range(n):
            e = math.exp(row[k] - top)  # in the array's dtype: expf for float32, as numpy
            dst[k] = e
            total += e
        inv = 1.0 / total
        for k in range(n):
            dst[k] = dst[k] * inv


@kernel(lambda f: void(ro(f[:, ::1]), ro(f[:, ::1]), f[:, ::1]))
def _softmax_backward(s, grad, out):  # pragma: no cover (compiled)
    m, n = s.shape
    for i in range(m):
        sr, gr, dst = s[i], grad[i], out[i]
        dot = 0.0
        for k in range(n):
            dot += gr[k] * sr[k]
        for k in range(n):
            dst[k] = sr[k] * (gr[k] - dot)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax of ``x`` over its last axis (at least one dimension, a non-empty last axis)."""
    x = contiguous(x)
    out = np.empty_like(x)
    _softmax(x.reshape(-1, x.shape[-1]), 0.0, out.reshape(-1, x.shape[-1]))
    return out


def softmax_backward(s: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``s * (grad - sum(grad * s))`` over the last axis, from the softmax output ``s``."""
    grad = contiguous(grad)
    n = grad.shape[-1]
    out = np.empty_like(grad)
    _softmax_backward(contiguous(s, dtype=grad.dtype).reshape(-1, n), grad.reshape(-1, n), out.reshape(-1, n))
    return out
