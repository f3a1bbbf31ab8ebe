"""Reference solutions of notebook 01 (autograd)."""

from __future__ import annotations

import numpy as np

import minidl
from minidl.autograd import Context, Function
from minidl.tensor import Tensor


class Softplus(Function):
    """softplus(x) = log(1 + e^x); its derivative is sigmoid(x)."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # never overflows

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        (x,) = ctx.inputs  # the input Tensor: a backward made of Tensor ops is itself differentiable
        return grad * minidl.sigmoid(x)


def hvp(f, x: Tensor, v: Tensor) -> Tensor:
    """H v without forming H: the gradient of (grad f . v), two reverse passes."""
    (g,) = minidl.grad(f(x), x, create_graph=True)
    (hv,) = minidl.grad((g * v).sum(), x)
    return hv
