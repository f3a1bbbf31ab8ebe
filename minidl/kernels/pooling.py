"""Pooling kernels: max pooling with argmax positions and its scatter-add, average pooling and its adjoint.

The references (:mod:`minidl.ops.pooling`) pad the input into a copy, take a strided window
view, and run ``argmax`` plus ``take_along_axis`` over it (max), or a strided ``sum`` (average);
the backward passes go through ``bincount`` (which works in float64) or a strided col2im. Here
each is one loop over the output, reading only the real input (padding is skipped, not copied).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import float64, int64, void

from minidl.kernels.jit import contiguous, kernel
from minidl.kernels.jit import readonly as ro
from minidl.window import Geometry

_GEOM = (int64,) * 10  # kh, kw, sh, sw, dh, dw, top, left, ho, wo


@numba.njit(nogil=True, cache=True)
def _max_pool_2x2(x, out, flat_index, sh, sw, ho, wo):  # pragma: no cover (compiled)
    """``_max_pool`` for 2x2 windows that all lie inside the input: the four taps unrolled, no bounds."""
    n, c, h, w = x.shape
    k = 0
    for b in range(n):
        for ch in range(c):
            plane = x[b, ch]
            base = (b * c + ch) * h * w
            for y in range(ho):
                r0 = plane[y * sh]
                r1 = plane[y * sh + 1]
                orow = out[b, ch, y]
                first = base + y * sh * w
                for xo in range(wo):
                    xx = xo * sw
                    a, bb, cc, d = r0[xx], r0[xx + 1], r1[xx], r1[xx + 1]
                    best, where = a, 0
                    best, where = (bb, 1) if bb > best else (best, where)
                    best, where = (cc, w) if cc > best else (best, where)
                    best, where = (d, w + 1) if d > best else (best, where)
                    if a != a or bb != bb or cc != cc or d != d:  # the first NaN is the maximum (numpy's argmax)
                        best, where = (a, 0) if a != a else (bb, 1) if bb != bb else (cc, w) if cc != cc else (d, w + 1)
                    orow[xo] = best
                    flat_index[k] = first + xx + where
                    k += 1


@kernel(lambda f: void(ro(f[:, :, :, ::1]), f[:, :, :, ::1], int64[::1], *_GEOM))
def _max_pool(x, out, flat_index, kh, kw, sh, sw, dh, dw, top, left, ho, wo):  # pragma: no cover (compiled)
    n, c, h, w = x.shape
    # each window's rows and columns inside the input, once per call (not an integer division per output)
    row_lo, row_hi = np.empty(ho, np.int64), np.empty(ho, np.int64)
    for y in range(ho):
        y0 = y * sh - top
        row_lo[y] = (-y0 + dh - 1) // dh if y0 < 0 else 0
        row_hi[y] = min(kh, (h - 1 - y0) // dh + 1)
    col_lo, col_hi = np.empty(wo, np.int64), np.empty(wo, np.int64)
    for xo in range(wo):
        x0 = xo * sw - left
        col_lo[xo] = (-x0 + dw - 1) // dw if x0 < 0 else 0
        col_hi[xo] = min(kw, (w - 1 - x0) // dw + 1)
    if (
        kh == 2
        and kw == 2
        and dh == 1
        and dw == 1
        and top == 0
        and left == 0
        and (ho - 1) * sh + 2 <= h
        and (wo - 1) * sw + 2 <= w
    ):
        _max_pool_2x2(x, out, flat_index, sh, sw, ho, wo)  # every window whole: LeNet's, 3x fewer instructions
        return
    k = 0
    for b in range(n):
        for ch in range(c):
            plane = x[b, ch]
            base = (b * c + ch) * h * w
            for y in range(ho):
                y0 = y * sh - top
                i_lo, i_hi = row_lo[y], row_hi[y]
                orow = out[b, ch, y]
                for xo in range(wo):
                    x0 = xo * sw - left
                    j_lo, j_hi = col_lo[xo], col_hi[xo]
                    yy = y0 + i_lo * dh
                    xx = x0 + j_lo * dw
                    best = plane[yy, xx]
                    where = yy * w + xx
                    nan = best != best
                    for i in range(i_lo, i_hi):
                        yy = y0 + i * dh
                        prow = plane[yy]
                        for j in range(j_lo, j_hi):
                            xx = x0 + j * dw
                            v = prow[xx]
                            bigger = v > best  # selects, not branches: random data mispredicts
                            best = v if bigger else best
                            where = yy * w + xx if bigger else where
                            nan |= v != v
                    if nan:  # numpy's argmax semantics: the first NaN is the maximum
                        found = False
                        for i in range(i_lo, i_hi):
                            for j in range(j_lo, j_hi):
                                v = plane[y0 + i * dh, x0 + j * dw]
                                if not found and v != v:
                                    best = v
                                    where = (y0 + i * dh) * w + x0 + j * dw
                                    found = True
                    orow[xo] = best
                    flat_index[k] = base + where
                    k += 1


@kernel(lambda f: void(ro(f[::1]), ro(int64[::1]), f[::1]))
def _scatter_add(grad, index, out):  # pragma: no cover (compiled)
    out[:] = 0
    for k in range(grad.size):
        out[index[k]] += grad[k]


@kernel(lambda f: void(ro(f[:, ::1]), ro(int64[::1]), f[:, ::1]))
def _scatter_add_rows(values, index, out):  # pragma: no cover (compiled)
    out[:, :] = 0
    for k in range(index.size):
        row, src = out[index[k]], values[k]
        for j in range(src.size):
            row[j] += src[j]


@kernel(lambda f: void(ro(f[:, :, :, ::1]), f[:, :, :, ::1], ro(float64[:, ::1]), *_GEOM))
def _avg_pool(x, out, divisor, kh, kw, sh, sw, dh, dw, top, left, ho, wo):  # pragma: no cover (compiled)
    n, c, h, w = x.shape
    for b in range(n):
        for ch in range(c):
            plane = x[b, ch]
            for y in range(ho):
                for xo in range(wo):
                    total = 0.0
                    for i in range(kh):
                        yy = y * sh + i * dh - top
                        if yy < 0 or yy >= h:
                            continue
                        for j in range(kw):
                            xx = xo * sw + j * dw - left
                            if 0 <= xx < w:
                                total += plane[yy, xx]
                    out[b, ch, y, xo] = total / divisor[y, xo]


@kernel(lambda f: void(ro(f[:, :, :, ::1]), f[:, :, :, ::1], ro(float64[:, ::1]), *_GEOM))
def _avg_pool_adjoint(g, out, divisor, kh, kw, sh, sw, dh, dw, top, left, ho, wo):  # pragma: no cover (compiled)
    n, c, h, w = out.shape
    out[:] = 0
    for b in range(n):
        for ch in range(c):
            plane = out[b, ch]
            for y in range(ho):
                for xo in range(wo):
                    share = g[b, ch, y, xo] / divisor[y, xo]
                    for i in range(kh):
                        yy = y * sh + i * dh - top
                        if yy < 0 or yy >= h:
                            continue
                        for j in range(kw):
                            xx = xo * sw + j * dw - left
                            if 0 <= xx < w:
                                plane[yy, xx] += share


def _geom_args(g: Geometry) -> tuple[int, ...]:
    return (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pads[0], g.pads[2], g.ho, g.wo)


def max_pool2d(x: np.ndarray, geom: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Window maxima (N, C, Ho, Wo) of ``x`` (N, C, H, W), and the flat position in ``x`` of each
    (int64, N*C*Ho*Wo), as the reference's ``ctx.flat_index``."""
    x = contiguous(x)
    n, c = x.shape[:2]
    out = np.empty((n, c, geom.ho, geom.wo), dtype=x.dtype)
    flat = np.empty(out.size, dtype=np.int64)
    _max_pool(x, out, flat, *_geom_args(geom))
    return out, flat


def scatter_add(grad: np.ndarray, index: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``shape``, zero except ``out.flat[index[k]] += grad.flat[k]`` (max pooling's backward)."""
    grad = contiguous(grad).reshape(-1)
    out = np.empty(shape, dtype=grad.dtype)
    _scatter_add(grad, contiguous(index, dtype=np.int64), out.reshape(-1))
    return out


def scatter_add_rows(values: np.ndarray, index: np.ndarray, rows: int) -> np.ndarray:
    """(rows, D) zeros with ``out[index[k]] += values[k]`` (an embedding's backward; ``np.add.at``
    took about 1 ms for the transformer's 1024 ids). ``index`` holds valid non-negative rows."""
    out = np.empty((rows, values.shape[1]), dtype=values.dtype)
    _scatter_add_rows(contiguous(values), contiguous(index, dtype=np.int64), out)
    return out


def avg_pool2d(x: np.ndarray, geom: Geometry, divisor: np.ndarray) -> np.ndarray:
    """Window sums of ``x`` (N, C, H, W), padding counted as zeros, divided by ``divisor`` (Ho, Wo)."""
    x = contiguous(x)
    out = np.empty((*x.shape[:2], geom.ho, geom.wo), dtype=x.dtype)
    _avg_pool(x, out, contiguous(divisor, dtype=np.float64), *_geom_args(geom))
    return out


def avg_pool2d_adjoint(g: np.ndarray, geom: Geometry, divisor: np.ndarray) -> np.ndarray:
    """Each ``g / divisor`` spread over its window, summed into an (N, C, H, W) image (the adjoint of
    :func:`avg_pool2d`)."""
    g = contiguous(g)
    out = np.empty((*g.shape[:2], geom.h, geom.w), dtype=g.dtype)
    _avg_pool_adjoint(g, out, contiguous(divisor, dtype=np.float64), *_geom_args(geom))
    return out
