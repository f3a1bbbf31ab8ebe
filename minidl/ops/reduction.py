"""Reductions over axes: sum, mean, max, min, var, std, logsumexp.

``axis`` is an int, a tuple of ints (negative values count from the end) or None for all axes.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np

from minidl.autograd import Context, Function
from minidl.ops.elementwise import exp, sqrt
from minidl.ops.shape import broadcast_to
from minidl.tensor import Tensor


def normalize_axes(axis: Any, ndim: int, op: str = "reduction") -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints; ``None`` means all axes."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, kept cheap
        return (axis % ndim,)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = set()
    for ax in axes:
        # a 0-d tensor accepts axis 0 and -1, as in PyTorch
        if not -builtins.max(ndim, 1) <= ax < builtins.max(ndim, 1):
            raise ValueError(f"{op}: axis {ax} is out of range for a tensor with {ndim} dimensions")
        out.add(int(ax) % builtins.max(ndim, 1))
    if ndim == 0:
        return ()
    return tuple(sorted(out))


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand_back(grad: Tensor, ctx: Context) -> Tensor:
    """The gradient of a reduction's output brought back to the input's shape (keepdims, then broadcast)."""
    if not ctx.keepdims:
        grad = grad.reshape(_kept_shape(ctx.shape, ctx.axes))
    return broadcast_to(grad, ctx.shape)


class Sum(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        ctx.axes = normalize_axes(axis, a.ndim, "sum")
        ctx.keepdims = keepdims
        ctx.shape = a.shape
        return a.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return _expand_back(grad, ctx)


class _Extremum(Function):
    """Max or min; the gradient is shared equally between tied extreme elements (as PyTorch's full reduction)."""

    reduce: Any = None
    name = ""

    @classmethod
    def forward(cls, ctx: Context, a: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        ctx.axes = normalize_axes(axis, a.ndim, cls.name)
        ctx.keepdims = keepdims
        ctx.shape = a.shape
        if (a.size == 0 and any(a.shape[i] == 0 for i in ctx.axes)) or (a.size == 0 and a.ndim == 0):
            raise ValueError(f"{cls.name}: reduction over an empty dimension (shape {a.shape}, axis {axis})")
        kept = cls.reduce(a, axis=ctx.axes, keepdims=True)
        hit = a == kept
        ctx.share = hit / hit.sum(axis=ctx.axes, keepdims=True).astype(a.dtype)
        return kept if keepdims else kept.reshape(tuple(n for i, n in enumerate(a.shape) if i not in ctx.axes))

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return _expand_back(grad, ctx) * ctx.share.astype(grad.dtype, copy=False)


class Max(_Extremum):
    reduce = staticmethod(np.max)
    name = "max"


class Min(_Extremum):
    reduce = staticmethod(np.min)
    name = "min"


class LogSumExp(Function):
    save_output = True

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        ctx.axes = normalize_axes(axis, a.ndim, "logsumexp")
        ctx.keepdims = keepdims
        ctx.shape = a.shape
        if a.size == 0:
            m = np.zeros(_kept_shape(a.shape, ctx.axes), a.dtype)
        else:
            m = np.max(a, axis=ctx.axes, keepdims=True)
            m = np.where(np.isfinite(m), m, np.zeros((), a.dtype))  # all -inf: avoid inf - inf
        out = m + np.log(np.sum(np.exp(a - m), axis=ctx.axes, keepdims=True))
        return out if keepdims else out.reshape(tuple(n for i, n in enumerate(a.shape) if i not in ctx.axes))

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        out = ctx.output()
        if not ctx.keepdims:
            out = out.reshape(_kept_shape(ctx.shape, ctx.axes))
        return _expand_back(grad, ctx) * exp(ctx.inputs[0] - out)


def sum(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def _count(a: Tensor, axes: tuple[int, ...]) -> int:
    return math.prod(a.shape[i] for i in axes)


def mean(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    axes = normalize_axes(axis, a.ndim, "mean")
    count = _count(a, axes)
    total = sum(a, axis=axes, keepdims=keepdims)
    return total * (1.0 / count) if count else total * np.nan


def max(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return Max.apply(a, axis=axis, keepdims=keepdims)


def min(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return Min.apply(a, axis=axis, keepdims=keepdims)


def var(a: Tensor, axis: Any = None, keepdims: bool = False, correction: int = 1) -> Tensor:
    """Variance over ``axis`` with ``sum((a - mean)^2) / (n - correction)`` (PyTorch's default correction=1)."""
    axes = normalize_axes(axis, a.ndim, "var")
    n = _count(a, axes)
    centered = a - mean(a, axis=axes, keepdims=True)
    ss = sum(centered * centered, axis=axes, keepdims=keepdims)
    denom = n - correction
    return ss * (1.0 / denom) if denom > 0 else ss * np.nan


def std(a: Tensor, axis: Any = None, keepdims: bool = False, correction: int = 1) -> Tensor:
    return sqrt(var(a, axis, keepdims, correction))


def logsumexp(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    """``log(sum(exp(a)))`` over ``axis``, computed without overflow."""
    return LogSumExp.apply(a, axis=axis, keepdims=keepdims)
