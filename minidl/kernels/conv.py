"""col2im for conv2d's input gradient: the column gradients summed straight into the NCHW gradient.

The reference (:func:`minidl.window.col2im`) adds one strided slab per kernel offset into a
zero-padded copy, then the input gradient is cropped and transposed to NCHW. On LeNet-5's
second conv (10x10 outputs) each slab's rows are 10 floats, so numpy's per-row overhead is most
of the time. This loop writes each image's plane in place (padding skipped, not allocated), with
the valid output range of every offset computed once instead of tested per element.

The row layout's col2im (stride 1, :func:`minidl.ops.conv.row_col2im_input_grad`) adds whole runs
of Ho*Wp floats instead; numpy needs one call per kernel offset and chunk there, and its per-call
overhead was most of the time (3.5 ms against 1.2 ms for this loop on LeNet-5's second conv).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import int64, void

from minidl.kernels.gemm import gemm
from minidl.kernels.jit import kernel
from minidl.kernels.jit import readonly as ro
from minidl.kernels.pooling import _GEOM, _geom_args
from minidl.window import Geometry


@kernel(lambda f: void(ro(f[:, :, :, :, :, ::1]), f[:, :, :, ::1], *_GEOM))
def _col2im(dcols, out, kh, kw, sh, sw, dh, dw, top, left, ho, wo):  # pragma: no cover (compiled)
    c, m = dcols.shape[0], dcols.shape[3]
    h, w = out.shape[2], out.shape[3]
    out[:, :, :, :] = 0
    for ci in range(c):
        for i in range(kh):
            # outputs y whose input row y*sh + i*dh - top lies inside [0, h)
            y_lo = max(0, -((i * dh - top) // sh))
            y_hi = min(ho, (h - 1 + top - i * dh) // sh + 1)
            for j in range(kw):
                x_lo = max(0, -((j * dw - left) // sw))
                x_hi = min(wo, (w - 1 + left - j * dw) // sw + 1)
                for b in range(m):
                    plane, src = out[b, ci], dcols[ci, i, j, b]
                    for y in range(y_lo, y_hi):
                        row, s = plane[y * sh + i * dh - top], src[y]
                        for x in range(x_lo, x_hi):
                            row[x * sw + j * dw - left] += s[x]


def col2im_into(dcols: np.ndarray, out: np.ndarray, geom: Geometry) -> None:
    """``out`` (N, C, H, W), C-contiguous, := the column gradients ``dcols`` (C, kh, kw, N, Ho, Wo),
    C-contiguous, summed back into the images (the adjoint of im2col, padding cropped)."""
    _col2im(dcols, out, *_geom_args(geom))


@kernel(lambda f: void(ro(f[:, :, :, :, ::1]), f[::1], int64, int64, int64, int64, int64))
def _row_col2im(dcols, buf, base, plane, wp, dh, dw):  # pragma: no cover (compiled)
    c, kh, kw, m, hw = dcols.shape
    for b in range(m):  # one image's planes at a time: they stay in cache across the kh*kw runs
        end = base + (b + 1) * c * plane
        for ci in range(c):
            dst = base + (b * c + ci) * plane
            for i in range(kh):
                for j in range(kw):
                    d = dst + i * dh * wp + j * dw
                    # indices straight from range() (numba then drops its negative-index check); clipped
                    # at the image's end: past it the run holds only thrown-away (zero) columns, and the
                    # next image may belong to another thread
                    src, run = dcols[ci, i, j, b], buf[d:end]
                    for p in range(min(hw, run.size)):
                        run[p] += src[p]


def row_col2im_into(dcols: np.ndarray, buf: np.ndarray, base: int, geom: Geometry) -> None:
    """Row-layout col2im: ``dcols`` (C, kh, kw, images, Ho*Wp), C-contiguous, added run by run into the
    flat padded planes ``buf`` (images x C planes of Hp*Wp floats from offset ``base``, plus slack):
    run (c, i, j) of image b starts ``i*dh*Wp + j*dw`` into its plane (the adjoint of the row im2col).

    Writes only the chunk's own planes (never the slack, nor the next image), so chunks of images
    can run on several threads at once."""
    _row_col2im(dcols, buf, base, geom.hp * geom.wp, geom.wp, geom.dh, geom.dw)


@numba.njit(nogil=True, cache=True)
def _pad_images(x, xp, top, left, b0, b1):  # pragma: no cover (compiled)
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = xp.shape[2], xp.shape[3]
    for b in range(b0, b1):
        for ci in range(c):
            src, dst = x[b, ci], xp[b, ci]
            for y in range(hp):
                row, sy = dst[y], y - top
                if sy < 0 or sy >= h:
                    for q in range(wp):
                        row[q] = 0
                    continue
                # indices straight from range(): numba drops its negative-index check and vectorises
                s, mid, tail = src[sy], row[left:], row[left + w :]
                for q in range(left):
                    row[q] = 0
                for q in range(w):
                    mid[q] = s[q]
                for q in range(wp - left - w):
                    tail[q] = 0


@kernel(lambda f: void(ro(f[:, :, :, ::1]), f[:, :, :, ::1], int64, int64, int64, int64))
def _pad(x, xp, top, left, b0, b1):  # pragma: no cover (compiled)
    _pad_images(x, xp, top, left, b0, b1)


def pad_into(x: np.ndarray, xp: np.ndarray, top: int, left: int, images: slice) -> None:
    """``xp[images]`` (N, C, Hp, Wp), C-contiguous, := ``x[images]`` (N, C, H, W), C-contiguous, at
    row ``top`` and column ``left``, zeros around: each padded row written once (numpy's zeros then
    a strided copy wrote every float twice)."""
    _pad(x, xp, top, left, images.start, images.stop)


@kernel(lambda f: void(ro(f[:, :, :, ::1]), f[:, :, :, ::1], int64, int64))
def _row_grad(g, gz, b0, b1):  # pragma: no cover (compiled)
    o, ho, wo = g.shape[1], g.shape[2], g.shape[3]
    wp = gz.shape[3]
    for b in range(b0, b1):
        for oi in range(o):
            for y in range(ho):
                src, row = g[b, oi, y], gz[oi, b, y]
                for q in range(wo):
                    row[q] = src[q]
                for q in range(wo, wp):
                    row[q] = 0


def row_grad_into(g: np.ndarray, gz: np.ndarray, images: slice) -> None:
    """``gz[:, images]`` (O, N, Ho, Wp), C-contiguous, := ``g[images]`` (N, O, Ho, Wo), C-contiguous,
    channel-major, with zeros in the Wp - Wo columns of every row (the row layout's output gradient)."""
    _row_grad(g, gz, images.start, images.stop)


_ROWS = (int64,) * 8  # gemm address, kh, kw, dh, dw, images per GEMM, first image, end image

# The row layout computes Ho*Wp outputs per channel and keeps the first Wo of every row. Two ways to
# form them, both one ``nogil`` call per thread:
# - gather: copy the image's C*kh*kw runs of Ho*Wp floats into columns, then one GEMM with K = C*kh*kw;
# - direct: no copy. For a kernel offset (i, j) the runs of the C channels are already a matrix in the
#   padded input: C rows of Ho*Wp floats, one plane (Hp*Wp) apart, so kh*kw GEMMs with K = C read
#   it where it is (leading dimension Hp*Wp), accumulating (beta = 1). Their columns stop
#   (kw - 1) * dw short of Ho*Wp: the last thrown-away columns, the only ones that would read past the
#   image's last plane. Faster from about 16 channels (16 and 32 measured: 1.7 against 2.4 ms and
#   3.5 against 5.1 for a 32-image forward), slower at 3 (0.52 against 0.42 ms): small K.


@numba.njit(nogil=True, cache=True)
def _gather_rows(xp, cols, b, m, kh, kw, dh, dw, hw):  # pragma: no cover (compiled)
    """The row layout's columns of images b .. b+m-1 of ``xp`` (N, C, Hp, Wp) into ``cols`` (C*kh*kw, m*Ho*Wp).

    Run (c, i, j) of an image is Ho*Wp consecutive floats of its flattened padded plane from
    ``i*dh*Wp + j*dw``; the few that would fall past the image's last plane feed only thrown-away
    columns and are written as zeros, so an image's columns read nothing but that image.
    """
    c, plane, wp = xp.shape[1], xp.shape[2] * xp.shape[3], xp.shape[3]
    for t in range(m):
        image = xp[b + t].reshape(c * plane)
        r = 0
        for ci in range(c):
            for i in range(kh):
                for j in range(kw):
                    src, dst = image[ci * plane + i * dh * wp + j * dw :], cols[r, t * hw : (t + 1) * hw]
                    inside = min(hw, src.size)
                    for q in range(inside):
                        dst[q] = src[q]
                    for q in range(hw - inside):
                        dst[inside + q] = 0
                    r += 1


@numba.njit(nogil=True, cache=True)
def _keep_columns(full, out, b, m, hw, wp):  # pragma: no cover (compiled)
    """``out[b + t, o, y, :]`` := ``full[o, t*hw + y*wp :]``'s first Wo floats, for the chunk's m images."""
    for t in range(m):
        for oi in range(out.shape[1]):
            for y in range(out.shape[2]):
                src, dst = full[oi, t * hw + y * wp :], out[b + t, oi, y]
                for q in range(out.shape[3]):
                    dst[q] = src[q]


@numba.njit(nogil=True, cache=True)
def _row_layout(g, gz, b, m, hw, wp):  # pragma: no cover (compiled)
    """``gz`` (O, m*Ho*Wp) := images b .. b+m-1 of ``g`` (N, O, Ho, Wo) in the row layout, zeros in the
    Wp - Wo thrown-away columns of every row."""
    o, ho, wo = g.shape[1], g.shape[2], g.shape[3]
    for oi in range(o):
        for t in range(m):
            for y in range(ho):
                src, dst = g[b + t, oi, y], gz[oi, t * hw + y * wp : t * hw + (y + 1) * wp]
                for q in range(wo):
                    dst[q] = src[q]
                for q in range(wp - wo):
                    dst[wo + q] = 0


@kernel(lambda f: void(ro(f[:, :, :, ::1]), f[:, :, :, ::1], ro(f[:, ::1]), f[:, :, :, ::1], *_ROWS, int64, int64))
def _row_correlate(x, xp, w, out, at, kh, kw, dh, dw, per, b0, b1, top, left):  # pragma: no cover (compiled)
    o, k = w.shape
    wp = xp.shape[3]
    hw = out.shape[2] * wp
    cols = np.empty((k, per * hw), xp.dtype)
    full = np.empty((o, per * hw), xp.dtype)
    for b in range(b0, b1, per):
        m = min(per, b1 - b)
        if top >= 0:  # pad this chunk's images first: still in cache when their columns are gathered
            _pad_images(x, xp, top, left, b, b + m)
        _gather_rows(xp, cols, b, m, kh, kw, dh, dw, hw)
        gemm(at, 0, o, m * hw, k, w, k, cols, per * hw, 0, full, per * hw)
        _keep_columns(full, out, b, m, hw, wp)


@kernel(
    lambda f: void(ro(f[:, :, :, ::1]), f[:, :, :, ::1], ro(f[:, :, :, ::1]), f[:, :, :, ::1], *_ROWS, int64, int64)
)
def _row_correlate_direct(x, xp, wt, out, at, kh, kw, dh, dw, per, b0, b1, top, left):  # pragma: no cover (compiled)
    c, plane, wp = xp.shape[1], xp.shape[2] * xp.shape[3], xp.shape[3]
    o = wt.shape[2]
    hw = out.shape[2] * wp
    cut = hw - (kw - 1) * dw  # columns that read only this image (the rest are thrown away)
    full = np.empty((o, hw), xp.dtype)
    for b in range(b0, b1):
        if top >= 0:
            _pad_images(x, xp, top, left, b, b + 1)
        image = xp[b].reshape(c * plane)
        for i in range(kh):
            for j in range(kw):  # (O, C) @ (C, cut) rows a plane apart, summed into full
                beta = 0 if i == 0 and j == 0 else 1
                gemm(at, 0, o, cut, c, wt[i, j], c, image[i * dh * wp + j * dw :], plane, beta, full, hw)
        _keep_columns(full, out, b, 1, hw, wp)


def row_correlate(
    x: np.ndarray | None,
    xp: np.ndarray,
    w: np.ndarray,
    out: np.ndarray,
    at: int,
    geom: Geometry,
    per: int,
    images: slice,
) -> None:
    """conv2d's row-layout correlation of ``images`` in one call: ``out`` (N, O, Ho, Wo) := the weights @
    the row columns of the padded input ``xp`` (N, C, Hp, Wp), through the BLAS GEMM at address ``at``
    (:mod:`minidl.kernels.gemm`). ``w`` (O, C*kh*kw): gathered columns, ``per`` images per GEMM;
    ``w`` (kh, kw, O, C): direct, one image at a time. With ``x`` (N, C, H, W) given, each chunk's
    images of ``xp`` are first padded from it; else ``xp`` must already hold them."""
    top, _, left, _ = geom.pads
    src, top, left = (x, top, left) if x is not None else (xp, -1, -1)
    run = _row_correlate_direct if w.ndim == 4 else _row_correlate
    run(src, xp, w, out, at, geom.kh, geom.kw, geom.dh, geom.dw, per, images.start, images.stop, top, left)


@kernel(lambda f: void(ro(f[:, :, :, ::1]), ro(f[:, :, :, ::1]), f[:, :, ::1], *_ROWS))
def _row_weight_grad(xp, g, parts, at, kh, kw, dh, dw, per, b0, b1):  # pragma: no cover (compiled)
    o, k, wp = g.shape[1], parts.shape[1], xp.shape[3]
    hw = g.shape[2] * wp
    cols = np.empty((k, per * hw), xp.dtype)
    gz = np.empty((o, per * hw), xp.dtype)
    for b in range(b0, b1, per):
        m = min(per, b1 - b)
        _row_layout(g, gz, b, m, hw, wp)
        _gather_rows(xp, cols, b, m, kh, kw, dh, dw, hw)
        # (C*kh*kw, m*Ho*Wp) @ (O, m*Ho*Wp) transposed: the reduction runs over the pixels
        gemm(at, 1, k, o, m * hw, cols, per * hw, gz, per * hw, 0, parts[b // per], o)


@kernel(lambda f: void(ro(f[:, :, :, ::1]), ro(f[:, :, :, ::1]), f[:, :, ::1], *_ROWS))
def _row_weight_grad_direct(xp, g, parts, at, kh, kw, dh, dw, per, b0, b1):  # pragma: no cover (compiled)
    c, plane, wp = xp.shape[1], xp.shape[2] * xp.shape[3], xp.shape[3]
    o = g.shape[1]
    hw = g.shape[2] * wp
    cut = hw - (kw - 1) * dw  # the pixels past it are thrown-away columns: zero gradient
    gz = np.empty((o, hw), xp.dtype)
    for b in range(b0, b1):
        _row_layout(g, gz, b, 1, hw, wp)
        image = xp[b].reshape(c * plane)
        for i in range(kh):
            for j in range(kw):  # rows c*kh*kw + i*kw + j of this image's part: (C, cut) @ (O, cut) transposed
                start = i * dh * wp + j * dw
                gemm(at, 1, c, o, cut, image[start:], plane, gz, hw, 0, parts[b, i * kw + j :], kh * kw * o)


def row_weight_grad(
    xp: np.ndarray, g: np.ndarray, parts: np.ndarray, at: int, geom: Geometry, per: int, images: slice, direct: bool
) -> None:
    """conv2d's row-layout weight gradient, chunk by chunk: ``parts[i]`` (C*kh*kw, O) := the row columns of
    chunk i (``per`` images from ``images.start``, a multiple of ``per``; one image when ``direct``) of
    the padded input ``xp`` @ the chunk's output gradient ``g`` (N, O, Ho, Wo) transposed, through the
    BLAS GEMM at address ``at``. The caller sums the parts in chunk order."""
    run = _row_weight_grad_direct if direct else _row_weight_grad
    run(xp, g, parts, at, geom.kh, geom.kw, geom.dh, geom.dw, per, images.start, images.stop)
