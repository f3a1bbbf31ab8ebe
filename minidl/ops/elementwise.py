"""Elementwise arithmetic with numpy broadcasting, and pointwise functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.autograd import Context, Function, is_grad_enabled
from minidl.tensor import Tensor


def unbroadcast(grad: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``grad`` over the axes that broadcasting expanded, so it matches ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _shape_of(x: Any) -> tuple[int, ...]:
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def _check_broadcast(op: str, a: np.ndarray, b: np.ndarray) -> None:
    try:
        np.broadcast_shapes(np.shape(a), np.shape(b))
    except ValueError:
        raise ValueError(f"{op}: shapes {np.shape(a)} and {np.shape(b)} cannot be broadcast together") from None


class Add(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        _check_broadcast("add", a, b)
        return np.add(a, b)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad, _shape_of(a)) if na else None,
            unbroadcast(grad, _shape_of(b)) if nb else None,
        )


class Sub(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        _check_broadcast("sub", a, b)
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad, _shape_of(a)) if na else None,
            unbroadcast(-grad, _shape_of(b)) if nb else None,
        )


class Mul(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        _check_broadcast("mul", a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad * b, _shape_of(a)) if na else None,
            unbroadcast(grad * a, _shape_of(b)) if nb else None,
        )


class Div(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        _check_broadcast("div", a, b)
        return np.true_divide(a, b)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad / b, _shape_of(a)) if na else None,
            unbroadcast(-grad * a / (b * b), _shape_of(b)) if nb else None,
        )


class Neg(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.negative(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return -grad


class Pow(Function):
    @staticmethod
    def forward(ctx: Context, a: Any, b: Any) -> np.ndarray:
        _check_broadcast("pow", a, b)
        return np.power(a, b)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            ga = unbroadcast(grad * b * a ** (b - 1), _shape_of(a))
        if nb:
            gb = unbroadcast(grad * a**b * log(a), _shape_of(b))
        return ga, gb


class Exp(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.out = np.exp(a)
        return ctx.out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        if is_grad_enabled():  # create_graph: recompute so the result is differentiable in a
            return grad * exp(ctx.inputs[0])
        return grad * Tensor._make(ctx.out)


class Log(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad / ctx.inputs[0]


class ReLU(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.mask = a > 0
        return np.where(ctx.mask, a, np.zeros((), a.dtype))

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad * ctx.mask.astype(grad.dtype)


class Cast(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        ctx.src = a.dtype
        return a.astype(dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad.astype(ctx.src)


def add(a: Any, b: Any) -> Tensor:
    return Add.apply(a, b)


def sub(a: Any, b: Any) -> Tensor:
    return Sub.apply(a, b)


def mul(a: Any, b: Any) -> Tensor:
    return Mul.apply(a, b)


def div(a: Any, b: Any) -> Tensor:
    return Div.apply(a, b)


def neg(a: Tensor) -> Tensor:
    return Neg.apply(a)


def pow(a: Any, b: Any) -> Tensor:
    return Pow.apply(a, b)


def exp(a: Tensor) -> Tensor:
    return Exp.apply(a)


def log(a: Tensor) -> Tensor:
    return Log.apply(a)


def relu(a: Tensor) -> Tensor:
    return ReLU.apply(a)
