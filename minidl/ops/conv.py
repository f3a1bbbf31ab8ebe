"""2-D convolution by im2col (a strided view, one copy) and one GEMM per group; unfold and fold.

``Conv2d`` is a fused op: numpy im2col and GEMMs, image chunk by image chunk; on the row layout
(stride 1, little padding waste) with one group, numba kernels that call numpy's own BLAS GEMM
run each thread's whole share of the images without the GIL (:mod:`minidl.kernels.conv`,
:mod:`minidl.kernels.gemm`). With several BLAS threads the chunks are shared among them
(:mod:`minidl.kernels.workers`), bitwise what one thread computes. Its reference composition,
:func:`conv2d_reference` (``Unfold`` then ``matmul``), is used when the gradient must itself be
differentiable (``create_graph=True``) and as the oracle in tests. ``Unfold`` and ``Fold`` are
each other's adjoints, so each one's backward is the other and both differentiate any number of
times.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from minidl import kernels
from minidl.autograd import Context, Function, composite_backward
from minidl.grad_mode import is_grad_enabled
from minidl.kernels.workers import chunk_threads, map_parts, share, threads
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
        n, o = x.shape[0], weight.shape[0]
        out = np.empty((n, groups, o // groups, geom.ho, geom.wo), dtype=np.result_type(x, weight))
        with chunk_threads():  # per-chunk GEMMs on one BLAS thread each, the chunks shared out
            ctx.xp = _correlate(x, geom, groups, weight.reshape(groups, o // groups, -1), out)
        out = out.reshape(n, o, geom.ho, geom.wo)
        if bias is not None:
            out += bias.reshape(1, o, 1, 1)
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        if is_grad_enabled():  # create_graph: differentiate the reference composition instead
            return composite_backward(conv2d_reference, ctx, grad)
        with chunk_threads():
            return Conv2d._backward(ctx, grad)

    @staticmethod
    def _backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, _ = ctx.inputs
        geom, groups = ctx.kwargs["geom"], ctx.kwargs["groups"]
        nx, nw, nb = ctx.needs_input_grad
        g = grad.data
        route = input_grad_route(geom, x.shape[1], g.shape[1]) if nx else None
        gx = gw = gb = None
        if nw:
            gw = Tensor._make(_weight_grad(ctx.xp, g, geom, groups).reshape(weight.shape))
        if route == "transposed":
            gx = Tensor._make(transposed_input_grad(g, weight.data, geom, groups))
        elif route == "rows":
            gz = _row_grad(g, geom, groups)
            gx = Tensor._make(row_col2im_input_grad(gz, weight.data, geom, groups, x.shape[1]))
        elif route == "col2im":
            gx = Tensor._make(col2im_input_grad(_group_grad(g, groups), weight.data, geom, groups, x.shape[1]))
        if nb:
            gb = Tensor._make(g.sum(axis=(0, 2, 3)))
        return gx, gw, gb


# bytes of im2col columns alive at once: the batch is processed in chunks of images whose columns
# fit, which bounds a conv's extra memory and keeps each chunk's columns in cache between the copy
# and the GEMM (measured in docs/performance.md). 1 MiB: at 2 MiB LeNet-5's step peak was its second
# conv's chunk of weight-gradient or input-gradient columns on top of the held activations
COLUMN_BUDGET = 1 << 20


def _chunks(n: int, image_bytes: int, budget: int | None = None) -> list[slice]:
    """Consecutive slices of ``n`` images, each with at most ``budget`` (default COLUMN_BUDGET)
    bytes of columns (at least one image)."""
    step = max(1, (COLUMN_BUDGET if budget is None else budget) // max(image_bytes, 1))
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def use_rows(geom: Geometry) -> bool:
    """Whether a correlation with this geometry takes the row-window layout (:func:`_row_cols`).

    The rule (measured, docs/performance.md): stride 1, and the padded row at most ROW_WASTE
    times the output row (the extra columns are computed and thrown away).
    """
    return (geom.sh, geom.sw) == (1, 1) and geom.wp <= ROW_WASTE * geom.wo


# the row layout computes Wp outputs per row and keeps Wo: taken while Wp <= ROW_WASTE * Wo
ROW_WASTE = 1.1
# bytes of row-layout columns per GEMM: chunks of about 4 LeNet-5 images or one ResNet-block image
# ran fastest at one thread (8 LeNet images were 2.5x slower, measured in docs/performance.md)
ROW_BUDGET = 384 << 10


def _pad_for(x: np.ndarray, geom: Geometry, fill: bool = True) -> np.ndarray:
    """``x`` padded for :func:`_correlate`: on the row path, C-contiguous and followed in memory
    by the ``(kw - 1) * dw`` zeros that the last image's last rows read past its end.

    ``fill=False``: the buffer only (slack zeroed), for the fused kernels that pad chunk by chunk
    (:func:`minidl.kernels.conv.row_correlate`); ``x`` itself when it needs no copy either way.
    """
    if not use_rows(geom):
        return padded(x, geom.pads)
    slack = (geom.kw - 1) * geom.dw
    if not slack and not any(geom.pads) and x.flags.c_contiguous:
        return x
    n, c = x.shape[:2]
    t, _, l, _ = geom.pads
    size = n * c * geom.hp * geom.wp
    if not kernels.wanted(x):
        buf = np.zeros(size + slack, dtype=x.dtype)
        xp = buf[:size].reshape(n, c, geom.hp, geom.wp)
        xp[:, :, t : t + geom.h, l : l + geom.w] = x
        return xp
    buf = np.empty(size + slack, dtype=x.dtype)
    buf[size:] = 0
    xp = buf[:size].reshape(n, c, geom.hp, geom.wp)
    if fill:
        xc = np.ascontiguousarray(x)
        share(lambda s: kernels.conv.pad_into(xc, xp, t, l, s), n, x.size + size)  # numba: each float written once
    return xp


def _row_cols(xp: np.ndarray, geom: Geometry, groups: int, images: slice) -> np.ndarray:
    """im2col by whole padded rows, for stride 1: (groups, C/groups*kh*kw, images*Ho*Wp), one copy.

    Column ``(b, y*Wp + x)`` of row (c, i, j) is ``xp[b, c, y + i*dh, x + j*dw]``: for a fixed
    (c, i, j) and image that is one contiguous run of ``Ho*Wp`` floats of the flattened plane, so
    the copy moves long runs (not Wo-float pieces), and a GEMM's output is (images, Ho, Wp) per
    channel, whose first Wo columns are the convolution (the rest read across the row's end and
    are thrown away). The chunk's images sit side by side, so one GEMM covers them all.
    ``xp`` must come from :func:`_pad_for` (the last runs read ``(kw - 1) * dw`` floats past it).
    """
    c, wp = xp.shape[1], xp.shape[3]
    sn, sc, sy, sx = xp.strides
    view = as_strided(
        xp[images],
        shape=(c, geom.kh, geom.kw, images.stop - images.start, geom.ho * wp),
        strides=(sc, sy * geom.dh, sx * geom.dw, sn, sx),
        writeable=False,
    )
    return view.reshape(groups, (c // groups) * geom.kh * geom.kw, -1)


def _correlate(x: np.ndarray, geom: Geometry, groups: int, wmat: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` (N, g, R, Ho, Wo) = ``wmat`` (g, R, K) @ the im2col columns of ``x``, image chunk by chunk;
    returns ``x`` padded (:func:`_pad_for`), for the weight gradient.

    Row path: one GEMM per chunk and group, (R, K) @ (K, images*Ho*Wp), then its first Wo columns of
    every row are copied out in NCHW order; with the numba kernels and one group, each thread's
    chunks are padded, gathered, multiplied and copied out in one ``nogil`` call
    (:func:`minidl.kernels.conv.row_correlate`). Otherwise one GEMM per image and group,
    (R, K) @ (K, Ho*Wo), whose result is already NCHW.
    """
    n, g, r = x.shape[0], groups, wmat.shape[1]
    at = _fused_gemm(x, wmat, groups) if use_rows(geom) else 0
    if at:
        xp = _pad_for(x, geom, fill=False)
        source = None if xp is x else np.ascontiguousarray(x)  # None: xp is x, nothing to pad
        c = x.shape[1]
        if c >= DIRECT_CHANNELS:  # kh*kw GEMMs straight from the padded planes, (kh, kw, R, C) weights
            w2 = np.ascontiguousarray(wmat[0].reshape(r, c, geom.kh, geom.kw).transpose(2, 3, 0, 1))
            chunks = [slice(b, b + 1) for b in range(n)]
        else:  # gathered columns, one GEMM per chunk
            w2 = np.ascontiguousarray(wmat[0])
            chunks = _chunks(n, wmat.shape[-1] * geom.ho * geom.wp * x.itemsize, ROW_BUDGET)
        out4, per = out.reshape(n, r, geom.ho, geom.wo), chunks[0].stop
        map_parts(lambda s: kernels.conv.row_correlate(source, xp, w2, out4, at, geom, per, s), _runs(chunks))
        return xp
    xp = _pad_for(x, geom)
    if use_rows(geom):

        def rows(s: slice) -> None:
            full = np.matmul(wmat, _row_cols(xp, geom, g, s))  # (g, R, images*Ho*Wp)
            out[s] = full.reshape(g, r, s.stop - s.start, geom.ho, geom.wp).transpose(2, 0, 1, 3, 4)[..., : geom.wo]

        map_parts(rows, _chunks(n, g * wmat.shape[-1] * geom.ho * geom.wp * xp.itemsize, ROW_BUDGET))
        return xp
    flat = out.reshape(n, g, r, geom.ho * geom.wo)
    map_parts(
        lambda s: np.matmul(wmat, _image_cols(xp[s], geom, g), out=flat[s]),
        _chunks(n, g * wmat.shape[-1] * geom.ho * geom.wo * xp.itemsize),
    )
    return xp


# input channels from which the fused row kernels multiply straight from the padded planes (kh*kw GEMMs
# with K = C, no column copy) instead of gathering columns: faster at 16 and 32 channels, slower at 3
# (measurements in minidl/kernels/conv.py)
DIRECT_CHANNELS = 16


def _fused_gemm(x: np.ndarray, other: np.ndarray, groups: int) -> int:
    """The BLAS GEMM address for the row layout's fused kernels (:func:`minidl.kernels.conv.row_correlate`),
    or 0 where they do not apply (numba off, another dtype, groups, no 64-bit-integer OpenBLAS)."""
    if groups != 1 or not kernels.wanted(x) or other.dtype != x.dtype:
        return 0
    from minidl.kernels.gemm import gemm_address

    return gemm_address(x.dtype)


def _runs(chunks: list[slice]) -> list[slice]:
    """The consecutive chunks as one run of images per thread (:func:`minidl.kernels.workers.threads`)."""
    n = min(threads(), len(chunks))
    return [slice(chunks[i * len(chunks) // n].start, chunks[(i + 1) * len(chunks) // n - 1].stop) for i in range(n)]


def _weight_grad(xp: np.ndarray, g: np.ndarray, geom: Geometry, groups: int) -> np.ndarray:
    """conv2d's weight gradient as (O, C/g*kh*kw): columns @ gy^T, summed over the image chunks.

    Computed as (cols @ gy^T)^T, whose reduction runs over the pixels: the operand order OpenBLAS
    runs fastest here (measured in docs/performance.md). On the row path the output gradient is
    laid out (g, O/g, N, Ho, Wp) with Wp - Wo zero columns per row, so the columns' thrown-away
    outputs contribute nothing.
    """
    n, o = g.shape[:2]
    og = o // groups
    k = xp.shape[1] // groups * geom.kh * geom.kw
    acc = np.zeros((groups, k, og), dtype=np.result_type(xp, g))
    at = _fused_gemm(xp, g, groups) if use_rows(geom) else 0
    if at:  # numba: each thread's chunks in one call, columns and GEMMs without the GIL
        direct = xp.shape[1] >= DIRECT_CHANNELS
        chunks = (
            [slice(b, b + 1) for b in range(n)]
            if direct
            else _chunks(n, k * geom.ho * geom.wp * xp.itemsize, ROW_BUDGET)
        )
        parts = np.empty((len(chunks), k, o), dtype=acc.dtype)
        gc, per = np.ascontiguousarray(g), chunks[0].stop
        map_parts(lambda s: kernels.conv.row_weight_grad(xp, gc, parts, at, geom, per, s, direct), _runs(chunks))
        parts = [parts.sum(axis=0)]  # one call on this thread, after all parts: the same sum at any thread count
    elif use_rows(geom):
        hw = geom.ho * geom.wp
        gzf = _row_grad(g, geom, groups)
        parts = map_parts(
            lambda s: np.matmul(
                _row_cols(xp, geom, groups, s), gzf[:, :, s.start * hw : s.stop * hw].transpose(0, 2, 1)
            ),
            _chunks(n, groups * k * hw * xp.itemsize, ROW_BUDGET),
        )
    else:
        gyb = g.reshape(n, groups, og, geom.ho * geom.wo).transpose(0, 1, 3, 2)
        parts = map_parts(
            lambda s: np.matmul(_image_cols(xp[s], geom, groups), gyb[s]).sum(axis=0),
            _chunks(n, groups * k * geom.ho * geom.wo * xp.itemsize),
        )
    for part in parts:  # in chunk order, whatever the threads: the same sum at any thread count
        acc += part
    return acc.transpose(0, 2, 1).reshape(o, k)


def _image_cols(xp: np.ndarray, geom: Geometry, groups: int) -> np.ndarray:
    """im2col per image: the padded input's windows as (N, groups, C/groups*kh*kw, Ho*Wo), one copy.

    Kept per image (not one (C*kh*kw, N*Ho*Wo) matrix) so the GEMMs come out in NCHW order and the
    weight gradient's reduction runs over Ho*Wo, the operand order OpenBLAS runs fastest (measured in
    docs/performance.md).
    """
    n, c = xp.shape[:2]
    return windows(xp, geom).reshape(n, groups, (c // groups) * geom.kh * geom.kw, geom.ho * geom.wo)


def _group_grad(g: np.ndarray, groups: int) -> np.ndarray:
    """The output gradient (N, O, Ho, Wo) as (groups, O/groups, N*Ho*Wo), matching the column layout."""
    n, o, ho, wo = g.shape
    return np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(groups, o // groups, n * ho * wo)


def input_grad_route(geom: Geometry, c: int, o: int) -> str:
    """Which algorithm computes the input gradient: ``"transposed"``, ``"rows"`` or ``"col2im"``.

    The rule (measured, docs/performance.md): the transposed convolution when :func:`use_transposed`
    allows it; else, for stride 1 with padded rows at most ROWS_GRAD_WASTE times the output rows, the
    row layout's col2im (:func:`row_col2im_input_grad`: runs of Ho*Wp floats instead of Wo); else
    GEMM + col2im (:func:`col2im_input_grad`, any stride).
    """
    if use_transposed(geom, c, o):
        return "transposed"
    if (geom.sh, geom.sw) == (1, 1) and geom.wp <= ROWS_GRAD_WASTE * geom.wo:
        return "rows"
    return "col2im"


# the row col2im's GEMM computes Wp columns per row for Wo: taken while Wp <= ROWS_GRAD_WASTE * Wo
# (LeNet-5's second conv, Wp = 1.4 Wo, ran 2x faster than col2im's runs of Wo = 10 floats)
ROWS_GRAD_WASTE = 1.5


def use_transposed(geom: Geometry, c: int, o: int) -> bool:
    """Which algorithm computes the input gradient of a conv with ``c`` inputs and ``o`` output channels.

    The rule (measured, docs/performance.md): a stride-1 convolution's input gradient is itself a
    convolution, of the output gradient padded by ``span - 1 - pad`` with the flipped, transposed
    weights (:func:`transposed_input_grad`: im2col of the gradient, one GEMM, no col2im). It writes
    columns of O*kh*kw x N*H*W floats; the GEMM-then-col2im route (:func:`col2im_input_grad`) writes
    C*kh*kw x N*Ho*Wo of them and then folds them back in kh*kw strided passes. So the transposed
    route is taken when its columns are no larger, ``O*H*W <= C*Ho*Wo``.
    """
    return transposed_fits(geom) and o * geom.h * geom.w <= c * geom.ho * geom.wo


def transposed_fits(geom: Geometry) -> bool:
    """Whether the transposed route applies: stride 1 and no padding beyond the dilated kernel's span."""
    span_h, span_w = geom.dh * (geom.kh - 1), geom.dw * (geom.kw - 1)
    return (geom.sh, geom.sw) == (1, 1) and max(geom.pads[:2]) <= span_h and max(geom.pads[2:]) <= span_w


def transposed_input_grad(g: np.ndarray, weight: np.ndarray, geom: Geometry, groups: int) -> np.ndarray:
    """Input gradient of a stride-1 conv as a convolution of ``g`` (N, O, Ho, Wo) with the flipped weights.

    ``gx[n, c, y, x] = sum over o, i, j of gpad[n, o, y + i*dh, x + j*dw] * w[o, c, kh-1-i, kw-1-j]``,
    ``gpad`` being ``g`` padded by ``span - 1 - pad`` on each side (so the output is H x W again).
    """
    n, o = g.shape[:2]
    cg, kh, kw = weight.shape[1:]
    span_h, span_w = geom.dh * (kh - 1), geom.dw * (kw - 1)
    t, b, l, r = geom.pads
    tg = Geometry(
        kh,
        kw,
        1,
        1,
        geom.dh,
        geom.dw,
        (span_h - t, span_h - b, span_w - l, span_w - r),
        geom.ho,
        geom.wo,
        geom.h,
        geom.w,
    )
    # (O, C/g, kh, kw) -> (g, C/g, O/g*kh*kw), kernel flipped: row ci of group gi reads every output channel of gi
    wt = weight.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    out = np.empty((n, groups, cg, geom.h, geom.w), dtype=np.result_type(g, weight))
    _correlate(g, tg, groups, wt.reshape(groups, cg, -1), out)
    return out.reshape(n, groups * cg, geom.h, geom.w)


def _row_grad(g: np.ndarray, geom: Geometry, groups: int) -> np.ndarray:
    """The output gradient (N, O, Ho, Wo) as (groups, O/groups, N*Ho*Wp): the row layout's column
    order, with zeros in the Wp - Wo columns per row that the row layout computes and throws away."""
    n, o = g.shape[:2]
    if kernels.wanted(g):  # numba: each float written once, the images shared among the threads
        gz = np.empty((o, n, geom.ho, geom.wp), dtype=g.dtype)
        gc = np.ascontiguousarray(g)
        share(lambda s: kernels.conv.row_grad_into(gc, gz, s), n, g.size + gz.size)
    else:
        gz = np.zeros((groups, o // groups, n, geom.ho, geom.wp), dtype=g.dtype)
        gz[..., : geom.wo] = g.reshape(n, groups, o // groups, geom.ho, geom.wo).transpose(1, 2, 0, 3, 4)
    return gz.reshape(groups, o // groups, n * geom.ho * geom.wp)


def row_col2im_input_grad(gz: np.ndarray, weight: np.ndarray, geom: Geometry, groups: int, c: int) -> np.ndarray:
    """Input gradient of a stride-1 conv by the row layout: column gradients ``w^T @ gz`` (``gz`` from
    :func:`_row_grad`), each (c, i, j) row of an image added as one contiguous run of ``Ho*Wp`` floats
    into the flattened padded plane at offset ``i*dh*Wp + j*dw`` (the adjoint of :func:`_row_cols`).

    The thrown-away columns of the row layout carry zero gradient, so the parts of a run that cross a
    row's end (or a plane's end, into the ``(kw - 1) * dw`` floats of slack) add nothing.
    """
    o = weight.shape[0]
    n = gz.shape[-1] // (geom.ho * geom.wp)
    hw, plane = geom.ho * geom.wp, geom.hp * geom.wp
    wt = weight.reshape(groups, o // groups, -1).transpose(0, 2, 1)  # (g, C/g*kh*kw, O/g)
    size = n * c * plane
    buf = np.zeros(size + (geom.kw - 1) * geom.dw, dtype=np.result_type(gz, weight))
    item = buf.itemsize
    chunks = _chunks(n, c * geom.kh * geom.kw * hw * item, ROW_BUDGET)
    if kernels.wanted(buf):  # numba: one image's runs at a time, each run one vectorised loop

        def fold(s: slice) -> None:  # writes only its own images' planes: chunks shared among the threads
            dcols = np.matmul(wt, gz[:, :, s.start * hw : s.stop * hw])  # (g, C/g*kh*kw, images*Ho*Wp)
            kernels.conv.row_col2im_into(dcols.reshape(c, geom.kh, geom.kw, -1, hw), buf, s.start * c * plane, geom)

        map_parts(fold, chunks)
    else:  # numpy: runs reach into the next image's first plane, so one chunk at a time
        for s in chunks:
            images = s.stop - s.start
            dcols = np.matmul(wt, gz[:, :, s.start * hw : s.stop * hw]).reshape(c, geom.kh, geom.kw, images, hw)
            for i in range(geom.kh):
                for j in range(geom.kw):
                    start = s.start * c * plane + i * geom.dh * geom.wp + j * geom.dw
                    strides = (plane * item, c * plane * item, item)
                    runs = as_strided(buf[start:], shape=(c, images, hw), strides=strides)
                    runs += dcols[:, i, j]
            del dcols  # before the next chunk's product: one chunk of columns alive at a time
    t, _, l, _ = geom.pads
    gxp = buf[:size].reshape(n, c, geom.hp, geom.wp)
    if not any(geom.pads):
        return gxp
    return np.ascontiguousarray(gxp[:, :, t : t + geom.h, l : l + geom.w])


def col2im_input_grad(gy: np.ndarray, weight: np.ndarray, geom: Geometry, groups: int, c: int) -> np.ndarray:
    """Input gradient as the column gradient ``w^T @ gy`` folded back by col2im (any stride), in
    chunks of images whose column gradients fit COLUMN_BUDGET: for the whole batch at once they were
    LeNet-5's step peak (3.8 MB for its second conv)."""
    o = weight.shape[0]
    hw = geom.ho * geom.wo
    n = gy.shape[-1] // hw
    wt = weight.reshape(groups, o // groups, -1).transpose(0, 2, 1)  # (g, C/g*kh*kw, O/g)
    gx = np.empty((n, c, geom.h, geom.w), dtype=np.result_type(gy, weight))
    for s in _chunks(n, groups * wt.shape[1] * hw * gx.itemsize):
        dcols = np.matmul(wt, gy[:, :, s.start * hw : s.stop * hw])  # (g, C/g*kh*kw, images*Ho*Wo)
        dcols = dcols.reshape(c, geom.kh, geom.kw, s.stop - s.start, geom.ho, geom.wo)
        if kernels.wanted(dcols):  # numba: summed straight into the NCHW chunk
            kernels.conv.col2im_into(dcols, gx[s], geom)
        else:  # fold in (C, N) order, where each kernel offset's slice is one contiguous block
            gx[s] = col2im(dcols.transpose(0, 3, 1, 2, 4, 5), geom).transpose(1, 0, 2, 3)
        del dcols  # before the next chunk's product: one chunk of columns alive at a time
    return gx


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
