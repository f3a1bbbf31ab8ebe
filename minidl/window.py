"""Sliding-window geometry for 2-D convolution and pooling: argument pairs, padding, output size, the window view.

One home for the arithmetic that conv2d, unfold/fold, max/average pooling, their numba kernels
and the ``nn`` layers all share, so that an argument is read and checked the same way everywhere
(one error type, one message). It depends on numpy only: the ops, the kernels and the layers
import it, and it imports none of them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided


def pair(value: Any, name: str, op: str, minimum: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints as a pair (``kernel_size=3`` means (3, 3)), at least ``minimum`` if given.

    Raises ValueError naming ``op``, the argument and the value for anything else.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        out = (int(value), int(value))
    else:
        try:
            a, b = value
            if isinstance(a, bool) or isinstance(b, bool) or int(a) != a or int(b) != b:
                raise TypeError
            out = (int(a), int(b))
        except (TypeError, ValueError):
            raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return out


class Geometry(NamedTuple):
    """Where the windows of a 2-D sliding-window op sit on a (padded) input."""

    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    h: int  # input height and width (unpadded)
    w: int
    ho: int  # output height and width
    wo: int

    @property
    def hp(self) -> int:
        return self.h + self.pads[0] + self.pads[1]

    @property
    def wp(self) -> int:
        return self.w + self.pads[2] + self.pads[3]


def geometry(
    op: str,
    shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> Geometry:
    """The windows of ``kernel`` over the last two dims of ``shape``: ``(H + pads - span) // stride + 1`` per axis."""
    h, w = shape[-2], shape[-1]
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    if min(kh, kw) < 1 or min(sh, sw) < 1 or min(dh, dw) < 1:
        raise ValueError(f"{op}: kernel size, stride and dilation must be positive, got {kernel}, {stride}, {dilation}")
    if min(pads) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {pads}")
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if hp < span_h or wp < span_w:
        raise ValueError(
            f"{op}: input of spatial size ({h}, {w}) (({hp}, {wp}) after padding) is smaller than the "
            f"dilated kernel ({span_h}, {span_w})"
        )
    return Geometry(kh, kw, sh, sw, dh, dw, pads, h, w, (hp - span_h) // sh + 1, (wp - span_w) // sw + 1)


def conv_padding(
    padding: Any, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int], op: str
) -> tuple[int, int, int, int]:
    """PyTorch's padding argument (int, pair, "valid" or "same") as (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
            pads: list[int] = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]  # the extra pixel goes after, as in PyTorch
            return (pads[0], pads[1], pads[2], pads[3])
        raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    ph, pw = pair(padding, "padding", op, minimum=0)
    return (ph, ph, pw, pw)


def pool_geometry(
    op: str,
    shape: tuple[int, ...],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> Geometry:
    """Pooling's windows, with PyTorch's rules: ``stride`` defaults to the kernel, padding is at most
    half the kernel, and ``ceil_mode`` lets a last window start inside the input and run past its end."""
    kernel = pair(kernel_size, "kernel_size", op)
    no_stride = stride is None or (isinstance(stride, (list, tuple)) and not stride)
    stride_ = kernel if no_stride else pair(stride, "stride", op)
    ph, pw = pair(padding, "padding", op)
    dil = pair(dilation, "dilation", op)
    for p, k in ((ph, kernel[0]), (pw, kernel[1])):
        if p < 0 or 2 * p > k:
            raise ValueError(f"{op}: padding {padding} must be non-negative and at most half the kernel size {kernel}")
    pads = [ph, ph, pw, pw]
    if ceil_mode:  # extra padding after the end so the ceil-mode windows fit
        h, w = shape[-2], shape[-1]
        for axis, (n, k, s, d, p) in enumerate(
            ((h, kernel[0], stride_[0], dil[0], ph), (w, kernel[1], stride_[1], dil[1], pw))
        ):
            span = d * (k - 1) + 1
            out = math.ceil((n + 2 * p - span) / s) + 1 if n + 2 * p >= span else 0
            if out > 0 and (out - 1) * s >= n + p:
                out -= 1
            need = (out - 1) * s + span - (n + 2 * p)
            pads[2 * axis + 1] += max(need, 0)
    return geometry(op, shape, kernel, stride_, (pads[0], pads[1], pads[2], pads[3]), dil)


def padded(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """``x`` with its last two dims padded by (top, bottom, left, right) filled with ``value``."""
    if not any(pads):
        return x
    t, b, l, r = pads
    out = np.full(x.shape[:-2] + (x.shape[-2] + t + b, x.shape[-1] + l + r), value, dtype=x.dtype)
    out[..., t : t + x.shape[-2], l : l + x.shape[-1]] = x
    return out


def windows(xp: np.ndarray, g: Geometry) -> np.ndarray:
    """A read-only view of shape (N, C, kh, kw, Ho, Wo): element [n, c, i, j, y, x] is
    ``xp[n, c, y*sh + i*dh, x*sw + j*dw]``. No copy."""
    sn, sc, sy, sx = xp.strides
    return as_strided(
        xp,
        shape=(xp.shape[0], xp.shape[1], g.kh, g.kw, g.ho, g.wo),
        strides=(sn, sc, sy * g.dh, sx * g.dw, sy * g.sh, sx * g.sw),
        writeable=False,
    )


def col2im(cols: np.ndarray, g: Geometry) -> np.ndarray:
    """Adjoint of :func:`windows` with the padding cropped: sums ``cols`` (N, C, kh, kw, Ho, Wo) back
    into an (N, C, H, W) image. One vectorised pass per kernel offset, not per element."""
    n, c = cols.shape[:2]
    out = np.zeros((n, c, g.hp, g.wp), dtype=cols.dtype)
    for i in range(g.kh):
        rows = slice(i * g.dh, i * g.dh + g.sh * (g.ho - 1) + 1, g.sh)
        for j in range(g.kw):
            cols_ = slice(j * g.dw, j * g.dw + g.sw * (g.wo - 1) + 1, g.sw)
            out[:, :, rows, cols_] += cols[:, :, i, j]
    t, _, l, _ = g.pads
    return out[:, :, t : t + g.h, l : l + g.w]
