"""Activation functions: relu, leaky_relu, gelu (exact and tanh), tanh, sigmoid, silu, softplus.

Backwards are written with Tensor ops (or in terms of the op's own output), so every activation
is differentiable any number of times.
"""

from __future__ import annotations

import math

import numpy as np

from minidl import kernels
from minidl.autograd import Context, Function
from minidl.grad_mode import is_grad_enabled
from minidl.ops.elementwise import exp, where
from minidl.ops.special import erf
from minidl.tensor import Tensor

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class ReLU(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        if kernels.wanted(a):  # numba: one pass (np.where with a scalar zero is numpy's slow path)
            out, ctx.mask = kernels.activation.relu(a)
            return out
        ctx.mask = a > 0
        return np.where(ctx.mask, a, np.zeros((), a.dtype))

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        if kernels.wanted(grad.data) and not is_grad_enabled():
            return Tensor._make(kernels.activation.relu_backward(grad.data, ctx.mask))
        return grad * ctx.mask.astype(grad.dtype)


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
        ctx.slope = np.where(a > 0, np.ones((), a.dtype), np.asarray(negative_slope, a.dtype))
        return a * ctx.slope

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad * ctx.slope


class Tanh(Function):
    save_output = True

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.tanh(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        out = ctx.output()
        return grad * (1.0 - out * out)


class Sigmoid(Function):
    save_output = True

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.exp(-np.logaddexp(np.zeros((), a.dtype), -a))  # no overflow for large |a|

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        out = ctx.output()
        return grad * (out * (1.0 - out))


def _normal_cdf(a: np.ndarray) -> np.ndarray:
    """``Phi(a)`` in ``a``'s dtype (a new array)."""
    cdf = erf(a * np.asarray(1.0 / math.sqrt(2.0), a.dtype))
    cdf += 1.0
    cdf *= 0.5
    return cdf


def _gelu_slope(a: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """``Phi(a) + a phi(a)``, GELU's derivative, from ``cdf = Phi(a)``."""
    pdf = np.exp(-0.5 * a * a) * np.asarray(_INV_SQRT_2PI, a.dtype)
    return cdf + a * pdf


class GELU(Function):
    """``x * Phi(x)`` with the exact normal CDF ``Phi``. ``Phi(x)`` is kept for backward: the
    error function (libm's, one element at a time) is most of GELU's cost, paid once per step."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.cdf = _normal_cdf(a)
        return a * ctx.cdf

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        if is_grad_enabled():  # create_graph: the derivative as an op of its own, differentiable
            return grad * GELUDerivative.apply(ctx.inputs[0])
        return Tensor._make(grad.data * _gelu_slope(ctx.inputs[0].data, ctx.cdf))


class GELUDerivative(Function):
    """``d/dx [x Phi(x)] = Phi(x) + x phi(x)``, an op of its own so that GELU's gradient is differentiable."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return _gelu_slope(a, _normal_cdf(a))

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        x = ctx.inputs[0]
        pdf = exp(x * x * -0.5) * _INV_SQRT_2PI
        return grad * pdf * (2.0 - x * x)


class SiLU(Function):
    """``x * sigmoid(x)`` (swish)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return a * np.exp(-np.logaddexp(np.zeros((), a.dtype), -a))

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        x = ctx.inputs[0]
        s = Sigmoid.apply(x)
        return grad * (s * (1.0 + x * (1.0 - s)))


class Softplus(Function):
    """``log(1 + exp(beta x)) / beta``, linear above ``threshold`` (like ``torch.nn.functional.softplus``)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
        z = a * np.asarray(beta, a.dtype)
        ctx.linear = z > threshold
        soft = np.logaddexp(np.zeros((), a.dtype), z) / np.asarray(beta, a.dtype)
        return np.where(ctx.linear, a, soft)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        beta = ctx.kwargs.get("beta", 1.0)
        s = Sigmoid.apply(ctx.inputs[0] * beta)
        if ctx.linear.any():
            s = where(ctx.linear, Tensor._make(np.ones((), s.dtype)), s)
        return grad * s


def relu(a: Tensor) -> Tensor:
    return ReLU.apply(a)


def leaky_relu(a: Tensor, negative_slope: float = 0.01) -> Tensor:
    return LeakyReLU.apply(a, negative_slope=float(negative_slope))


def tanh(a: Tensor) -> Tensor:
    return Tanh.apply(a)


def sigmoid(a: Tensor) -> Tensor:
    return Sigmoid.apply(a)


def gelu(a: Tensor, approximate: str = "none") -> Tensor:
    """GELU: exact (``approximate="none"``, via erf) or the tanh approximation (``"tanh"``)."""
    if approximate == "none":
        return GELU.apply(a)
    if approximate == "tanh":
        inner = (a + a * a * a * 0.044715) * math.sqrt(2.0 / math.pi)
        return a * 0.5 * (Tanh.apply(inner) + 1.0)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(a: Tensor) -> Tensor:
    return SiLU.apply(a)


def softplus(a: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return Softplus.apply(a, beta=float(beta), threshold=float(threshold))
