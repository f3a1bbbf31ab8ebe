"""ReLU and exact GELU, forward and backward in one pass each.

The ReLU reference (:class:`minidl.ops.activation.ReLU`) computes ``a > 0`` and then
``np.where(mask, a, 0)``, whose broadcast zero takes numpy's slow general path (2.1 ms for
512k float32 here, against 0.2 ms for this loop), and its backward multiplies by the mask cast
to floats (a temporary the size of the gradient). GELU's reference chains six numpy passes and
an erf kernel forward, and a derivative op (eight passes) plus a product backward.
"""

from __future__ import annotations

import math

import numpy as np
from numba import boolean, void

from minidl.kernels.jit import contiguous, kernel
from minidl.kernels.jit import readonly as ro


@kernel(lambda f: void(ro(f[::1]), f[::1], boolean[::1]))
def _relu(a, out, mask):  # pragma: no cover (compiled)
    for i in range(a.size):
        v = a[i]
        keep = v > 0
        mask[i] = keep
        out[i] = v if keep else 0


@kernel(lambda f: void(ro(f[::1]), ro(boolean[::1]), f[::1]))
def _relu_backward(grad, mask, out):  # pragma: no cover (compiled)
    for i in range(grad.size):
        out[i] = grad[i] if mask[i] else 0


def relu(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(max(a, 0), a > 0)``; NaN maps to 0 like the reference's ``where(a > 0, a, 0)``."""
    a = contiguous(a)
    out = np.empty_like(a)
    mask = np.empty(a.shape, dtype=np.bool_)
    _relu(a.reshape(-1), out.reshape(-1), mask.reshape(-1))
    return out, mask


def relu_backward(grad: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``grad`` where ``mask`` holds, else 0."""
    grad = contiguous(grad)
    out = np.empty_like(grad)
    _relu_backward(grad.reshape(-1), contiguous(mask).reshape(-1), out.reshape(-1))
    return out


_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@kernel(lambda f: void(ro(f[::1]), f[::1]))
def _gelu(a, out):  # pragma: no cover (compiled)
    for i in range(a.size):
        v = a[i]
        out[i] = v * (0.5 * (1.0 + math.erf(v * _SQRT1_2)))


@kernel(lambda f: void(ro(f[::1]), ro(f[::1]), f[::1]))
def _gelu_backward(grad, a, out):  # pragma: no cover (compiled)
    for i in range(a.size):
        v = a[i]
        cdf = 0.5 * (1.0 + math.erf(v * _SQRT1_2))
        pdf = math.exp(-0.5 * v * v) * _INV_SQRT_2PI
        out[i] = grad[i] * (cdf + v * pdf)


def gelu(a: np.ndarray) -> np.ndarray:
    """Exact GELU ``a * Phi(a)`` (erf evaluated in double precision, rounded once to ``a``'s dtype)."""
    a = contiguous(a)
    out = np.empty_like(a)
    _gelu(a.reshape(-1), out.reshape(-1))
    return out


def gelu_backward(grad: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``grad * (Phi(a) + a phi(a))``: GELU's backward (the reference's derivative op and product) in one pass."""
    grad = contiguous(grad)
    out = np.empty_like(grad)
    _gelu_backward(grad.reshape(-1), contiguous(a, dtype=grad.dtype).reshape(-1), out.reshape(-1))
    return out
