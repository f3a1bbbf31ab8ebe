"""2-D convolution by im2col (a strided view, one copy) and one GEMM per group; unfold and fold.

``Conv2d`` is a fused op: its forward and backward are plain numpy (the place where a compiled
kernel can later slot in behind the same Function). Its reference composition,
:func:`conv2d_reference` (``Unfold`` then ``matmul``), is used when the gradient must itself be
differentiable (``create_graph=True``) and as the oracle in tests. ``Unfold`` and ``Fold`` are
each other's adjoints, so each one's backward is the other and both differentiate any number of
times.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import kernels
from minidl.autograd import Context, Function, composite_backward
from minidl.grad_mode import is_grad_enabled
from minidl.tensor import Tensor
from minidl.window import Geometry, col2im, conv_padding, geometry, padded, pair, windows


class Unfold(Function):
    """Sliding blocks as columns: (N, C, H, W) -> (N, C*kh*kw, Ho*Wo), like ``torch.nn.functional.unfold``."""

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, geom: Geometry) -> np.ndarray:
        n, c = x.shape[:2]
        cols = windows(padded(x, geom.pads), geom)
        return cols.reshape(n, c * geom.kh * geom.kw, geom.ho * geom.wo)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return Fold.apply(grad, geom=ctx.kwargs["geom"])


class Fold(Function):
    """Columns summed back into an image: (N, C*kh*kw, Ho*Wo) -> (N, C, H, W); the adjoint of ``Unfold``."""

    @staticmethod
    def forward(ctx: Context, cols: np.ndarray, geom: Geometry) -> np.ndarray:
        n, ck = cols.shape[:2]
        c = ck // (geom.kh * geom.kw)
        return col2im(cols.reshape(n, c, geom.kh, geom.kw, geom.ho, geom.wo), geom)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return Unfold.apply(grad, geom=ctx.kwargs["geom"])


class Conv2d(Function):
    """Fused 2-D convolution (cross-correlation, like PyTorch) with stride, padding, dilation, groups."""

    @staticmethod
    def forward(
        ctx: Context, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, geom: Geometry, groups: int
    ) -> np.ndarray:
        n = x.shape[0]
        o = weight.shape[0]
        xp = padded(x, geom.pads)
        cols = _group_cols(xp, geom, groups)  # (g, C/g*kh*kw, N*Ho*Wo)
        out = np.matmul(weight.reshape(groups, o // groups, -1), cols)  # (g, O/g, N*Ho*Wo)
        ctx.xp = xp
        if kernels.wanted(out):  # numba: the transpose to NCHW and the bias in one pass
            return kernels.conv.to_nchw(out, bias, n, geom.ho, geom.wo)
        out = out.reshape(o, n, geom.ho, geom.wo).transpose(1, 0, 2, 3)
        if bias is not None:
            out += bias.reshape(1, o, 1, 1)
        return np.ascontiguousarray(out)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        if is_grad_enabled():  # create_graph: differentiate the reference composition instead
            return composite_backward(conv2d_reference, ctx, grad)
        x, weight, _ = ctx.inputs
        geom, groups = ctx.kwargs["geom"], ctx.kwargs["groups"]
        nx, nw, nb = ctx.needs_input_grad
        g = grad.data
        n, o = g.shape[:2]
        # (N, O, Ho, Wo) -> (g, O/g, N*Ho*Wo), matching the column layout
        gy = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(groups, o // groups, -1)
        w = weight.data.reshape(groups, o // groups, -1)
        gx = gw = gb = None
        if nw:
            cols = _group_cols(ctx.xp, geom, groups)
            # gw = gy @ cols^T, computed as (cols @ gy^T)^T: OpenBLAS runs that operand order 1.5x faster here
            gw = Tensor._make(np.matmul(cols, gy.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(weight.shape))
            del cols  # before the input gradient's columns exist: one column buffer at a time (peak memory)
        if nx:
            c = x.shape[1]
            dcols = np.matmul(w.transpose(0, 2, 1), gy)  # (g, C/g*kh*kw, N*Ho*Wo)
            # fold in (C, N) order, where each kernel offset's slice is one contiguous block
            dcols = dcols.reshape(c, geom.kh, geom.kw, n, geom.ho, geom.wo).transpose(0, 3, 1, 2, 4, 5)
            gx = Tensor._make(np.ascontiguousarray(col2im(dcols, geom).transpose(1, 0, 2, 3)))
        if nb:
            gb = Tensor._make(g.sum(axis=(0, 2, 3)))
        return gx, gw, gb


def _group_cols(xp: np.ndarray, geom: Geometry, groups: int) -> np.ndarray:
    """im2col: the padded input's windows as (groups, C/groups*kh*kw, N*Ho*Wo), one copy."""
    n, c = xp.shape[:2]
    win = windows(xp, geom).transpose(1, 2, 3, 0, 4, 5)  # (C, kh, kw, N, Ho, Wo)
    return win.reshape(groups, (c // groups) * geom.kh * geom.kw, n * geom.ho * geom.wo)


def conv2d_reference(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, geom: Geometry, groups: int = 1
) -> Tensor:
    """Conv2d composed of ``Unfold`` and ``matmul``: slower, but every part is an ordinary differentiable op."""
    n, c = x.shape[:2]
    o = weight.shape[0]
    cols = Unfold.apply(x, geom=geom).reshape(n, groups, (c // groups) * geom.kh * geom.kw, geom.ho * geom.wo)
    out = weight.reshape(1, groups, o // groups, -1) @ cols  # (N, g, O/g, Ho*Wo)
    out = out.reshape(n, o, geom.ho, geom.wo)
    return out if bias is None else out + bias.reshape(1, o, 1, 1)


def _check_float(op: str, **tensors: Any) -> np.dtype:
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    for name, dt in dtypes.items():
        if dt.kind != "f":
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {dt}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} is {dt}" for name, dt in dtypes.items())
        raise TypeError(f"{op}: all tensors must have one dtype ({listed})")
    return next(iter(dtypes.values()))


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution of ``input`` (N, C, H, W) or (C, H, W) with ``weight`` (O, C/groups, kh, kw)."""
    op = "conv2d"
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be (N, C, H, W) or (C, H, W), got shape {input.shape}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be (out_channels, in_channels/groups, kh, kw), got shape {weight.shape}")
    _check_float(op, input=input, weight=weight, bias=bias)
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    groups = int(groups)
    o, cg, kh, kw = weight.shape
    c = input.shape[1]
    if groups < 1 or c % groups or o % groups:
        raise ValueError(f"{op}: groups={groups} must divide in_channels {c} and out_channels {o}")
    if cg * groups != c:
        raise ValueError(
            f"{op}: input has {c} channels (shape {input.shape}) but weight {weight.shape} expects "
            f"{cg * groups} (= {cg} x groups {groups})"
        )
    if bias is not None and bias.shape != (o,):
        raise ValueError(f"{op}: bias must have shape ({o},), got {bias.shape}")
    stride_, dilation_ = pair(stride, "stride", op), pair(dilation, "dilation", op)
    pads = conv_padding(padding, (kh, kw), dilation_, stride_, op)
    geom = geometry(op, input.shape, (kh, kw), stride_, pads, dilation_)
    return Conv2d.apply(input, weight, bias, geom=geom, groups=groups)


def unfold(input: Tensor, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1) -> Tensor:
    """Sliding local blocks as columns (N, C*kh*kw, L), like ``torch.nn.functional.unfold``."""
    op = "unfold"
    if input.ndim != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W), got shape {input.shape}")
    ph, pw = pair(padding, "padding", op)
    geom = geometry(
        op,
        input.shape,
        pair(kernel_size, "kernel_size", op),
        pair(stride, "stride", op),
        (ph, ph, pw, pw),
        pair(dilation, "dilation", op),
    )
    return Unfold.apply(input, geom=geom)


def fold(
    input: Tensor, output_size: Any, kernel_size: Any, dilation: Any = 1, padding: Any = 0, stride: Any = 1
) -> Tensor:
    """Sum columns (N, C*kh*kw, L) back into an image (N, C, H, W), like ``torch.nn.functional.fold``."""
    op = "fold"
    h, w = pair(output_size, "output_size", op)
    kernel = pair(kernel_size, "kernel_size", op)
    ph, pw = pair(padding, "padding", op)
    geom = geometry(op, (h, w), kernel, pair(stride, "stride", op), (ph, ph, pw, pw), pair(dilation, "dilation", op))
    k = kernel[0] * kernel[1]
    if input.ndim != 3 or input.shape[1] % k or input.shape[2] != geom.ho * geom.wo:
        raise ValueError(
            f"{op}: input must be (N, C*{k}, {geom.ho * geom.wo}) for output_size {(h, w)} and kernel {kernel}, "
            f"got shape {input.shape}"
        )
    return Fold.apply(input, geom=geom)
