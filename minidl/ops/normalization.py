"""Batch normalisation (training and eval) and layer normalisation, as fused ops.

Forward and backward are plain numpy with the textbook closed-form gradient, the slot for a
compiled kernel later. Under ``create_graph`` the backward differentiates the reference
compositions (:func:`batch_norm_reference`, :func:`layer_norm_reference`) instead, which are also
the oracles in tests.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl import kernels
from minidl.autograd import Context, Function, composite_backward
from minidl.grad_mode import is_grad_enabled
from minidl.ops.conv import _check_float
from minidl.tensor import Tensor


def _data(x: Any) -> np.ndarray | None:
    return x.data if isinstance(x, Tensor) else x


def _normalize_grad(dxhat: np.ndarray, xhat: np.ndarray, invstd: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Gradient through ``xhat = (x - mean) * invstd`` with mean and variance over ``axes`` of ``x``."""
    mean_d = dxhat.mean(axis=axes, keepdims=True)
    mean_dx = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return (dxhat - mean_d - xhat * mean_dx) * invstd


def _affine_grads(ctx: Context, g: np.ndarray, xhat: np.ndarray, reduce_axes: tuple[int, ...], shape: tuple):
    _, nw, nb = ctx.needs_input_grad[:3]
    gw = Tensor._make((g * xhat).sum(axis=reduce_axes).reshape(shape)) if nw else None
    gb = Tensor._make(g.sum(axis=reduce_axes).reshape(shape)) if nb else None
    return gw, gb


class BatchNorm(Function):
    """Normalise each channel (dim 1) over the batch and spatial dims; update running statistics in training."""

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        running_mean: Any,
        running_var: Any,
        training: bool,
        momentum: float,
        eps: float,
    ) -> np.ndarray:
        c = x.shape[1]
        axes = (0, *range(2, x.ndim))
        bshape = (1, c) + (1,) * (x.ndim - 2)
        fast = kernels.wanted(x)  # numba: per channel, statistics (two passes) then normalise and affine
        if training and fast:
            mean, var, invstd, ctx.xhat, out = kernels.normalization.batch_norm_train(x, weight, bias, eps)
            mean, var, invstd = mean.reshape(bshape), var.reshape(bshape), invstd.reshape(bshape)
        elif training:
            mean = x.mean(axis=axes, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        if training:
            n = x.size // c
            with np.errstate(divide="ignore", invalid="ignore"):
                unbiased = var * (n / (n - 1)) if n > 1 else np.full_like(var, np.nan)
            for stat, value in ((_data(running_mean), mean), (_data(running_var), unbiased)):
                if stat is not None:
                    stat *= 1.0 - momentum
                    stat += (momentum * value.reshape(c)).astype(stat.dtype, copy=False)
        else:
            mean = np.asarray(_data(running_mean), dtype=x.dtype).reshape(bshape)
            var = np.asarray(_data(running_var), dtype=x.dtype).reshape(bshape)
        if training and fast:
            ctx.invstd, ctx.axes = invstd, axes
            return out
        invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
        if fast:
            ctx.xhat, out = kernels.normalization.batch_normalize(x, mean, invstd, weight, bias)
            ctx.invstd, ctx.axes = invstd, axes
            return out
        xhat = (x - mean) * invstd
        ctx.xhat, ctx.invstd, ctx.axes = xhat, invstd, axes
        out = xhat if weight is None else xhat * weight.reshape(bshape)
        return out if bias is None else out + bias.reshape(bshape)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        if is_grad_enabled():  # create_graph: differentiate the reference composition instead
            return composite_backward(batch_norm_reference, ctx, grad)
        weight = ctx.inputs[1]
        g = grad.data
        if kernels.wanted(g):  # numba: two passes per channel, all three gradients
            w = None if weight is None else weight.data
            grads = kernels.normalization.batch_norm_backward(
                g, ctx.xhat, ctx.invstd, w, ctx.kwargs["training"], ctx.needs_input_grad
            )
            return tuple(None if a is None else Tensor._make(a) for a in grads)
        c = g.shape[1]
        bshape = (1, c) + (1,) * (g.ndim - 2)
        gx = None
        if ctx.needs_input_grad[0]:
            dxhat = g if weight is None else g * weight.data.reshape(bshape)
            if ctx.kwargs["training"]:
                gx = _normalize_grad(dxhat, ctx.xhat, ctx.invstd, ctx.axes)
            else:
                gx = dxhat * ctx.invstd
            gx = Tensor._make(gx)
        gw, gb = _affine_grads(ctx, g, ctx.xhat, ctx.axes, (c,))
        return gx, gw, gb


def batch_norm_reference(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Any = None,
    running_var: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch norm composed of primitive ops (running statistics are read, never updated, here)."""
    c = x.shape[1]
    axes = (0, *range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if training:
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
    else:
        centered = x - Tensor._make(np.asarray(_data(running_mean), x.dtype).reshape(bshape))
        var = Tensor._make(np.asarray(_data(running_var), x.dtype).reshape(bshape))
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(bshape)
    return out if bias is None else out + bias.reshape(bshape)


class LayerNorm(Function):
    """Normalise over the trailing ``len(normalized_shape)`` dims, with an optional elementwise affine."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, k: int, eps: float):
        axes = tuple(range(x.ndim - k, x.ndim))
        if kernels.wanted(x):  # numba: statistics, normalise and affine per row, in three passes
            ctx.xhat, ctx.invstd, out = kernels.normalization.layer_norm(x, k, weight, bias, eps)
            ctx.axes = axes
            return out
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = centered * invstd
        ctx.xhat, ctx.invstd, ctx.axes = xhat, invstd, axes
        out = xhat if weight is None else xhat * weight
        return out if bias is None else out + bias

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        if is_grad_enabled():
            return composite_backward(layer_norm_reference, ctx, grad)
        x, weight = ctx.inputs[:2]
        g = grad.data
        if kernels.wanted(g):  # numba: two passes per row, all three gradients
            w = None if weight is None else weight.data
            grads = kernels.normalization.layer_norm_backward(
                g, ctx.xhat, ctx.invstd, w, len(ctx.axes), ctx.needs_input_grad
            )
            return tuple(None if a is None else Tensor._make(a) for a in grads)
        gx = None
        if ctx.needs_input_grad[0]:
            dxhat = g if weight is None else g * weight.data
            gx = Tensor._make(_normalize_grad(dxhat, ctx.xhat, ctx.invstd, ctx.axes))
        lead = tuple(range(g.ndim - len(ctx.axes)))
        gw, gb = _affine_grads(ctx, g, ctx.xhat, lead, x.shape[g.ndim - len(ctx.axes) :])
        return gx, gw, gb


def layer_norm_reference(x: Tensor, weight: Tensor | None, bias: Tensor | None, k: int, eps: float) -> Tensor:
    """Layer norm composed of primitive ops."""
    axes = tuple(range(x.ndim - k, x.ndim))
    centered = x - x.mean(axis=axes, keepdims=True)
    var = (centered * centered).mean(axis=axes, keepdims=True)
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def batch_norm(
    input: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation over dim 1 of (N, C), (N, C, L) or (N, C, H, W), like ``torch.nn.functional.batch_norm``.

    In training the batch statistics normalise and the running statistics (Tensors or arrays,
    may be None) are updated in place: ``r = (1 - momentum) * r + momentum * stat`` with the
    unbiased variance. In eval the running statistics normalise.
    """
    op = "batch_norm"
    if input.ndim < 2:
        raise ValueError(f"{op}: input must have a channel dim (N, C, ...), got shape {input.shape}")
    _check_float(op, input=input, weight=weight, bias=bias)
    c = input.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and np.shape(_data(t)) != (c,):
            raise ValueError(f"{op}: {name} must have shape ({c},) for input {input.shape}, got {np.shape(_data(t))}")
    if training:
        if input.size // max(c, 1) < 2:
            raise ValueError(
                f"{op}: training needs more than 1 value per channel to compute a variance, got input {input.shape}"
            )
    elif running_mean is None or running_var is None:
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var")
    return BatchNorm.apply(
        input,
        weight,
        bias,
        running_mean=running_mean,
        running_var=running_var,
        training=bool(training),
        momentum=float(momentum),
        eps=float(eps),
    )


def layer_norm(
    input: Tensor,
    normalized_shape: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing dims ``normalized_shape``, like ``torch.nn.functional.layer_norm``."""
    op = "layer_norm"
    shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.shape[input.ndim - k :] != shape or input.ndim < k:
        raise ValueError(f"{op}: input of shape {input.shape} does not end with normalized_shape {shape}")
    _check_float(op, input=input, weight=weight, bias=bias)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != shape:
            raise ValueError(f"{op}: {name} must have shape {shape}, got {t.shape}")
    if math.prod(shape) == 0:
        raise ValueError(f"{op}: normalized_shape {shape} has no elements")
    return LayerNorm.apply(input, weight, bias, k=k, eps=float(eps))
