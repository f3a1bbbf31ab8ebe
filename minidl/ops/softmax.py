"""Numerically stable softmax and log-softmax (the maximum is subtracted before exponentiating)."""

from __future__ import annotations

import numpy as np

from minidl import kernels
from minidl.autograd import Context, Function
from minidl.grad_mode import is_grad_enabled
from minidl.tensor import Tensor


def _check_axis(op: str, x: np.ndarray, axis: int) -> int:
    nd = max(x.ndim, 1)
    if not -nd <= axis < nd:
        raise ValueError(f"{op}: dim {axis} is out of range for a tensor of shape {x.shape}")
    return axis % nd if x.ndim else 0


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    if x.ndim == 0:
        return x - x
    if x.shape[axis] == 0:
        return x
    m = x.max(axis=axis, keepdims=True)
    return x - np.where(np.isfinite(m), m, np.zeros((), x.dtype))


def softmax_array(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of an array along a valid ``axis`` (the numba kernel for the last axis)."""
    axis = axis % x.ndim if x.ndim else 0
    if kernels.wanted(x) and axis == x.ndim - 1 and x.shape[-1]:  # numba: one row at a time
        return kernels.softmax.softmax(x)
    e = np.exp(_shifted(x, axis))
    return e / e.sum(axis=axis if x.ndim else None, keepdims=True)


def softmax_grad_array(s: np.ndarray, grad: np.ndarray, axis: int = -1) -> np.ndarray:
    """``s * (grad - sum(grad * s))`` along ``axis``: softmax's backward from its output ``s``."""
    if kernels.wanted(grad) and axis % grad.ndim == grad.ndim - 1 and grad.shape[-1]:
        return kernels.softmax.softmax_backward(s, grad)
    return s * (grad - (grad * s).sum(axis=axis, keepdims=True))


class Softmax(Function):
    save_output = True

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axis: int = -1) -> np.ndarray:
        ctx.axis = _check_axis("softmax", x, axis)
        return softmax_array(x, ctx.axis)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        # d softmax: s * (g - sum(g * s)), written with the output so it is itself differentiable
        s = ctx.output()
        if not is_grad_enabled() and grad.ndim:
            return Tensor._make(softmax_grad_array(s.data, grad.data, ctx.axis))
        return s * (grad - (grad * s).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    save_output = True

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axis: int = -1) -> np.ndarray:
        ctx.axis = _check_axis("log_softmax", x, axis)
        shifted = _shifted(x, ctx.axis)
        return shifted - np.log(np.exp(shifted).sum(axis=ctx.axis if x.ndim else None, keepdims=True))

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        # d log_softmax: g - softmax * sum(g), softmax = exp(output)
        return grad - ctx.output().exp() * grad.sum(axis=ctx.axis, keepdims=True)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax.apply(x, axis=int(axis))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=int(axis))
