"""2-D pooling: max (with indices), average (PyTorch's divisor rules), adaptive average.

Both fused ops read their windows through the same strided view as conv2d. Max pooling records
the flat input position of every maximum, so its backward is one scatter-add (``index_add``),
which is itself a differentiable op. Average pooling and its adjoint (spreading each output
gradient over its window) are each other's backward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import kernels
from minidl.autograd import Context, Function
from minidl.grad_mode import is_grad_enabled
from minidl.ops.conv import _check_float
from minidl.ops.shape import IndexAdd
from minidl.tensor import Tensor
from minidl.window import Geometry, col2im, padded, pool_geometry, windows


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx: Context, x: np.ndarray, geom: Geometry, indices_out: list | None = None) -> np.ndarray:
        n, c, h, w = x.shape
        if kernels.wanted(x):  # numba: one pass over the windows; padding skipped, not copied
            out, ctx.flat_index = kernels.pooling.max_pool2d(x, geom)
            if indices_out is not None:
                indices_out.append(ctx.flat_index.reshape(out.shape) - (np.arange(n * c) * (h * w)).reshape(n, c, 1, 1))
            return out
        fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        win = windows(padded(x, geom.pads, fill), geom)  # (N, C, kh, kw, Ho, Wo)
        flat = win.reshape(n, c, geom.kh * geom.kw, geom.ho, geom.wo)
        k = flat.argmax(axis=2)  # (N, C, Ho, Wo): kernel offset of each maximum
        out = np.take_along_axis(flat, k[:, :, None], axis=2)[:, :, 0]
        # position of each maximum in the unpadded input plane (padding never wins: it is -inf)
        rows = np.arange(geom.ho)[:, None] * geom.sh + (k // geom.kw) * geom.dh - geom.pads[0]
        cols = np.arange(geom.wo)[None, :] * geom.sw + (k % geom.kw) * geom.dw - geom.pads[2]
        plane_index = rows * w + cols  # what return_indices reports (PyTorch's convention)
        if indices_out is not None:
            indices_out.append(plane_index)
        planes = (np.arange(n * c) * (h * w)).reshape(n, c, 1, 1)
        ctx.flat_index = (plane_index + planes).reshape(-1)
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        x = ctx.inputs[0]
        if kernels.wanted(grad.data) and not is_grad_enabled():  # numba scatter-add (bincount goes via float64)
            return Tensor._make(kernels.pooling.scatter_add(grad.data, ctx.flat_index, x.shape))
        g = IndexAdd.apply(grad.reshape(-1), shape=(x.size,), index=ctx.flat_index)
        return g.reshape(x.shape)


def _avg_divisor(geom: Geometry, count_include_pad: bool, divisor_override: int | None) -> np.ndarray:
    """Per-output divisor (Ho, Wo) with PyTorch's rules for padding and ceil_mode overhang."""
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("avg_pool2d: divisor_override must not be 0")
        return np.full((geom.ho, geom.wo), float(divisor_override))
    sizes = []
    for n_out, n_in, k, s, p in (
        (geom.ho, geom.h, geom.kh, geom.sh, geom.pads[0]),
        (geom.wo, geom.w, geom.kw, geom.sw, geom.pads[2]),
    ):
        start = np.arange(n_out) * s - p
        end = np.minimum(start + k, n_in + p)
        if count_include_pad:
            sizes.append(end - start)
        else:
            sizes.append(np.minimum(end, n_in) - np.maximum(start, 0))
    return np.outer(sizes[0], sizes[1]).astype(np.float64)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx: Context, x: np.ndarray, geom: Geometry, divisor: np.ndarray) -> np.ndarray:
        if kernels.wanted(x):
            return kernels.pooling.avg_pool2d(x, geom, divisor)
        win = windows(padded(x, geom.pads), geom)
        return (win.sum(axis=(2, 3)) / divisor).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return AvgPool2dAdjoint.apply(grad, **ctx.kwargs)


class AvgPool2dAdjoint(Function):
    """Each output gradient spread evenly over its window: average pooling's backward (and vice versa)."""

    @staticmethod
    def forward(ctx: Context, g: np.ndarray, geom: Geometry, divisor: np.ndarray) -> np.ndarray:
        if kernels.wanted(g):
            return kernels.pooling.avg_pool2d_adjoint(g, geom, divisor)
        share = (g / divisor).astype(g.dtype, copy=False)
        spread = np.broadcast_to(share[:, :, None, None], share.shape[:2] + (geom.kh, geom.kw) + share.shape[2:])
        return col2im(spread, geom)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return AvgPool2d.apply(grad, **ctx.kwargs)


def _as_4d(op: str, x: Tensor) -> tuple[Tensor, bool]:
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x.unsqueeze(0), True
    raise ValueError(f"{op}: input must be (N, C, H, W) or (C, H, W), got shape {x.shape}")


def max_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max over sliding windows, like ``torch.nn.functional.max_pool2d`` (``stride`` defaults to the kernel size).

    With ``return_indices=True`` also returns, per output, the flat position (row * W + col) of
    the maximum in its input plane.
    """
    op = "max_pool2d"
    x, squeezed = _as_4d(op, input)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{op}: unsupported dtype {x.dtype}")
    geom = pool_geometry(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    sink: list[np.ndarray] = []
    out = MaxPool2d.apply(x, geom=geom, indices_out=sink if return_indices else None)
    indices = Tensor._make(sink[0].astype(np.int64)) if return_indices else None
    if squeezed:
        out = out.squeeze(0)
        indices = indices.squeeze(0) if indices is not None else None
    return (out, indices) if return_indices else out


def avg_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over sliding windows, like ``torch.nn.functional.avg_pool2d``."""
    op = "avg_pool2d"
    x, squeezed = _as_4d(op, input)
    _check_float(op, input=x)
    geom = pool_geometry(op, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    divisor = _avg_divisor(geom, count_include_pad, divisor_override)
    out = AvgPool2d.apply(x, geom=geom, divisor=divisor)
    return out.squeeze(0) if squeezed else out


def _adaptive_matrix(n_in: int, n_out: int, dtype: np.dtype) -> np.ndarray:
    """(n_out, n_in) averaging matrix over PyTorch's adaptive bins [floor(i*n/m), ceil((i+1)*n/m))."""
    i = np.arange(n_out)
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)
    pos = np.arange(n_in)
    member = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return (member / (end - start)[:, None]).astype(dtype)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average over PyTorch's adaptive bins so the output is ``output_size`` (None keeps a dimension).

    Computed as ``P_h @ x @ P_w^T`` with constant averaging matrices: two matmuls, differentiable
    any number of times.
    """
    op = "adaptive_avg_pool2d"
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be (N, C, H, W) or (C, H, W), got shape {input.shape}")
    _check_float(op, input=input)
    h, w = input.shape[-2:]
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    oh, ow = (
        h if output_size[0] is None else int(output_size[0]),
        w if output_size[1] is None else int(output_size[1]),
    )
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: output_size must be positive, got {output_size}")
    if h == 0 or w == 0:
        raise ValueError(f"{op}: input has an empty spatial dimension, shape {input.shape}")
    if (oh, ow) == (1, 1):
        return input.mean(axis=(-2, -1), keepdims=True)
    out = input
    if ow != w:
        out = out @ Tensor._make(_adaptive_matrix(w, ow, input.dtype).T)
    if oh != h:
        out = Tensor._make(_adaptive_matrix(h, oh, input.dtype)) @ out
    return out
