"""Numerically stable log-softmax."""

from __future__ import annotations

import numpy as np

from minidl.autograd import Context, Function
from minidl.tensor import Tensor


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx: Context, x: np.ndarray, axis: int = -1) -> np.ndarray:
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.axis = axis
        ctx.out = out
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        from minidl.autograd import is_grad_enabled

        # d/dx log_softmax = grad - softmax * sum(grad); softmax = exp(out)
        if is_grad_enabled():
            softmax = log_softmax(ctx.inputs[0], ctx.axis).exp()
        else:
            softmax = Tensor._make(np.exp(ctx.out))
        return grad - softmax * grad.sum(axis=ctx.axis, keepdims=True)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=axis)
