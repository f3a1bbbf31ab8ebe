"""Reductions over axes: sum and mean (mean is composed from sum)."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.autograd import Context, Function
from minidl.ops.shape import broadcast_to
from minidl.tensor import Tensor


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints; ``None`` means all axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
        out.append(int(ax) % max(ndim, 1))
    return tuple(sorted(set(out)))


class Sum(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
        ctx.axes = normalize_axes(axis, a.ndim)
        ctx.keepdims = keepdims
        ctx.shape = a.shape
        return np.sum(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        if not ctx.keepdims:
            kept = tuple(1 if i in ctx.axes else n for i, n in enumerate(ctx.shape))
            grad = grad.reshape(kept)
        return broadcast_to(grad, ctx.shape)


def sum(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    axes = normalize_axes(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes])) if axes else 1
    total = sum(a, axis=axes, keepdims=keepdims)
    return total * (1.0 / count) if count else total * np.nan
