"""conv2d's algorithms and the rules choosing between them: input gradient by transposed convolution,
row-layout col2im or GEMM + col2im; forward and weight gradient on the row layout or per-image columns.

Each path is checked against an independent oracle (the adjoint of the convolution written as one
einsum per kernel offset, scattered into the padded input), in float32 and float64, with stride,
dilation, asymmetric padding and groups; and conv2d's backward by float64 gradcheck on shapes that
take each path (a spy checks which one ran).
"""

from __future__ import annotations

import numpy as np
import pytest

import minidl
import minidl.functional as F
from minidl import gradcheck
from minidl.ops import conv
from minidl.window import conv_padding, geometry


def adjoint_oracle(gy: np.ndarray, w: np.ndarray, shape: tuple[int, ...], stride, pads, dilation, groups) -> np.ndarray:
    """d(sum(conv(x) * gy))/dx: every output pixel sends w[o, c, i, j] * gy back to the input pixel it read."""
    n, c, h, wd = shape
    o, cg, kh, kw = w.shape
    og = o // groups
    t, b, l, r = pads
    (sh, sw), (dh, dw) = stride, dilation
    ho, wo = gy.shape[2:]
    gx = np.zeros((n, c, h + t + b, wd + l + r), dtype=np.float64)
    for gi in range(groups):
        gyg = gy[:, gi * og : (gi + 1) * og].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                part = np.einsum("noyx,oc->ncyx", gyg, w[gi * og : (gi + 1) * og, :, i, j].astype(np.float64))
                rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                gx[:, gi * cg : (gi + 1) * cg, rows, cols] += part
    return gx[:, :, t : t + h, l : l + wd]


# (input shape, weight shape, stride, padding, dilation, groups)
CASES = [
    ((2, 4, 7, 6), (4, 4, 3, 3), 1, 1, 1, 1),  # the ResNet block's shape, small
    ((2, 3, 6, 7), (5, 3, 2, 2), 1, "same", 1, 1),  # even kernel: padding (0, 1) per axis
    ((1, 4, 9, 8), (6, 2, 3, 3), 1, 2, 2, 2),  # dilation, groups, padding = span
    ((2, 2, 8, 8), (3, 2, 3, 2), 1, (0, 1), 1, 1),  # no padding rows, asymmetric kernel
    ((2, 4, 9, 9), (4, 4, 3, 3), 2, 1, 1, 1),  # stride 2: col2im only
]


def _setup(case, dtype):
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(1)
    stride_, dil = (stride, stride), (dilation, dilation)
    pads = conv_padding(padding, ws[2:], dil, stride_, "test")
    geom = geometry("test", xs, ws[2:], stride_, pads, dil)
    w = rng.standard_normal(ws).astype(dtype)
    gy = rng.standard_normal((xs[0], ws[0], geom.ho, geom.wo)).astype(dtype)
    want = adjoint_oracle(gy, w, xs, stride_, pads, dil, groups)
    return gy, w, geom, groups, xs, want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_input_grad_paths_match_oracle(case, dtype):
    gy, w, geom, groups, xs, want = _setup(case, dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    got = conv.col2im_input_grad(conv._group_grad(gy, groups), w, geom, groups, xs[1])
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if case[2] == 1:  # the row layout's col2im: stride 1, any padding, numba and numpy
        for numba in (True, False):
            with minidl.kernels.use_numba(numba):
                got = conv.row_col2im_input_grad(conv._row_grad(gy, geom, groups), w, geom, groups, xs[1])
            assert got.dtype == dtype and got.shape == xs and got.flags.c_contiguous
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if conv.transposed_fits(geom):
        for numba in (True, False):
            with minidl.kernels.use_numba(numba):
                got = conv.transposed_input_grad(gy, w, geom, groups)
            assert got.dtype == dtype and got.shape == xs and got.flags.c_contiguous
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    else:
        assert case[2] == 2  # only the stride-2 case falls outside the transposed route


def test_rule():
    def geom(xs, k, stride=1, pad=1):
        return geometry("t", xs, (k, k), (stride, stride), (pad,) * 4, (1, 1))

    assert conv.use_transposed(geom((32, 16, 32, 32), 3), 16, 16)  # ResNet block: equal columns
    assert not conv.use_transposed(geom((64, 6, 14, 14), 5, pad=0), 6, 16)  # LeNet-5's second conv
    assert not conv.use_transposed(geom((32, 3, 32, 32), 3), 3, 16)  # more outputs than inputs
    assert not conv.use_transposed(geom((32, 16, 32, 32), 3, stride=2), 16, 16)
    assert not conv.use_transposed(geom((2, 4, 8, 8), 3, pad=3), 4, 4)  # padding beyond the span
    assert conv.use_transposed(geom((2, 4, 8, 8), 3, pad=2), 4, 4)
    assert conv.input_grad_route(geom((32, 16, 32, 32), 3), 16, 16) == "transposed"
    assert conv.input_grad_route(geom((64, 6, 14, 14), 5, pad=0), 6, 16) == "rows"  # LeNet-5: 14 for 10
    assert conv.input_grad_route(geom((64, 6, 11, 11), 5, pad=0), 6, 16) == "col2im"  # 11 for 7
    assert conv.input_grad_route(geom((32, 16, 32, 32), 3, stride=2), 16, 16) == "col2im"


ROUTE_CASES = {  # a case per input-gradient route, and the route the rule must pick for it
    "transposed": CASES[0],
    "rows": CASES[2],  # more outputs than inputs, rows 1.5x the output rows
    "col2im": CASES[4],  # stride 2
    "col2im ": ((2, 2, 5, 5), (4, 2, 3, 3), 1, 0, 1, 1),  # stride 1, rows 5 for 3 outputs
    "rows ": ((2, 2, 6, 6), (4, 2, 3, 3), 1, 0, 1, 1),
}
ROUTE_FUNCTIONS = {
    "transposed": "transposed_input_grad",
    "rows": "row_col2im_input_grad",
    "col2im": "col2im_input_grad",
}


@pytest.mark.parametrize("route", list(ROUTE_CASES))
def test_gradcheck_each_path(route, monkeypatch):
    xs, ws, stride, padding, dilation, groups = ROUTE_CASES[route]
    ran = []
    for name in ROUTE_FUNCTIONS.values():
        original = getattr(conv, name)
        monkeypatch.setattr(conv, name, lambda *a, _f=original, _n=name: ran.append(_n) or _f(*a))
    rng = np.random.default_rng(2)
    x = minidl.tensor(rng.standard_normal(xs), requires_grad=True)
    w = minidl.tensor(rng.standard_normal(ws), requires_grad=True)
    b = minidl.tensor(rng.standard_normal(ws[0]), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), [x, w, b])
    assert ran and set(ran) == {ROUTE_FUNCTIONS[route.strip()]}


def correlate_oracle(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """conv2d (groups 1, dilation 1) as one einsum per kernel offset over a zero-padded copy."""
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
            out += np.einsum("ncyx,oc->noyx", patch, w[:, :, i, j].astype(np.float64))
    return out


@pytest.mark.parametrize("budget", [1, 700, 1 << 30])  # one image per chunk, uneven chunks, one chunk
@pytest.mark.parametrize("stride", [1, 2])
def test_image_chunks_give_the_same_conv(budget, stride, monkeypatch):
    monkeypatch.setattr(conv, "COLUMN_BUDGET", budget)
    rng = np.random.default_rng(3)
    x = minidl.tensor(rng.standard_normal((5, 3, 7, 6)), requires_grad=True)
    w = minidl.tensor(rng.standard_normal((3, 3, 3, 3)), requires_grad=True)
    out = F.conv2d(x, w, None, stride, 1)
    np.testing.assert_allclose(out.data, correlate_oracle(x.data, w.data, stride, 1), rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(out.shape)
    (out * minidl.tensor(gy)).sum().backward()
    np.testing.assert_allclose(
        x.grad.data, adjoint_oracle(gy, w.data, x.shape, (stride,) * 2, (1,) * 4, (1, 1), 1), atol=1e-10
    )
    assert gradcheck(lambda x, w: F.conv2d(x, w, None, stride, 1), [x, w])


def test_col2im_input_grad_holds_one_chunk_of_columns_at_a_time(monkeypatch):
    import tracemalloc

    n, c, o, size, k = 16, 2, 3, 16, 5
    geom = geometry("conv2d", (n, c, size, size), (k, k), (2, 2), (2, 2, 2, 2), (1, 1))
    chunk = 4 * c * k * k * geom.ho * geom.wo * 4  # four images' float32 column gradients
    monkeypatch.setattr(conv, "COLUMN_BUDGET", chunk)
    rng = np.random.default_rng(0)
    gy = rng.standard_normal((1, o, n * geom.ho * geom.wo)).astype(np.float32)
    w = rng.standard_normal((o, c, k, k)).astype(np.float32)
    conv.col2im_input_grad(gy, w, geom, 1, c)  # compile (or load) the numba kernel outside the measurement
    tracemalloc.start()
    try:
        gx = conv.col2im_input_grad(gy, w, geom, 1, c)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    folded = 4 * c * geom.hp * geom.wp * 4  # one chunk's padded image sum
    assert peak < gx.nbytes + 1.5 * chunk + 2 * folded  # two chunks alive would be gx + 2 * chunk + ...
    want = adjoint_oracle(
        gy.reshape(o, n, geom.ho, geom.wo).transpose(1, 0, 2, 3), w, gx.shape, (2, 2), (2,) * 4, (1, 1), 1
    )
    np.testing.assert_allclose(gx, want, rtol=1e-4, atol=1e-4)


def correlate_general_oracle(x: np.ndarray, w: np.ndarray, stride, pads, dilation, groups) -> np.ndarray:
    """conv2d with every option, one einsum per group and kernel offset over a zero-padded float64 copy."""
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    t, b, l, r = pads
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (t, b), (l, r)))
    ho = (h + t + b - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + l + r - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, ho, wo))
    for gi in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[
                    :,
                    gi * cg : (gi + 1) * cg,
                    i * dh : i * dh + sh * (ho - 1) + 1 : sh,
                    j * dw : j * dw + sw * (wo - 1) + 1 : sw,
                ]
                part = np.einsum("ncyx,oc->noyx", patch, w[gi * og : (gi + 1) * og, :, i, j].astype(np.float64))
                out[:, gi * og : (gi + 1) * og] += part
    return out


# row layout cases: (input shape, weight shape, padding, dilation, groups); stride 1 always
ROW_CASES = [
    ((3, 4, 7, 6), (4, 4, 3, 3), 1, 1, 1),  # the ResNet block's shape, small
    ((2, 3, 6, 7), (5, 3, 2, 2), "same", 1, 1),  # even kernel: padding (0, 1) per axis
    ((2, 4, 9, 8), (6, 2, 3, 3), 2, 2, 2),  # dilation, groups
    ((2, 2, 8, 8), (3, 2, 3, 2), (0, 1), 1, 1),  # no padding rows, asymmetric kernel
    ((2, 3, 5, 5), (4, 3, 1, 1), 0, 1, 1),  # 1x1: no slack, no padding (the input itself)
    ((2, 2, 6, 6), (3, 2, 3, 3), 0, 1, 1),  # no padding: the slack after the last image
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("budget", [1, 300, 1 << 30])  # one image per GEMM, uneven chunks, one chunk
@pytest.mark.parametrize("case", ROW_CASES)
def test_row_layout_matches_oracles(case, budget, dtype, monkeypatch):
    """Forward, weight gradient and transposed input gradient on the row layout (forced) against the oracles."""
    monkeypatch.setattr(conv, "ROW_WASTE", 100.0)
    monkeypatch.setattr(conv, "ROW_BUDGET", budget)
    xs, ws, padding, dilation, groups = case
    rng = np.random.default_rng(4)
    dil = (dilation, dilation)
    pads = conv_padding(padding, ws[2:], dil, (1, 1), "test")
    geom = geometry("test", xs, ws[2:], (1, 1), pads, dil)
    assert conv.use_rows(geom)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    gy = rng.standard_normal((xs[0], ws[0], geom.ho, geom.wo)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    out = np.empty((xs[0], groups, ws[0] // groups, geom.ho, geom.wo), dtype=dtype)
    xp = conv._correlate(x, geom, groups, w.reshape(groups, ws[0] // groups, -1), out)  # returns x padded
    got = out.reshape(gy.shape)
    np.testing.assert_allclose(got, correlate_general_oracle(x, w, (1, 1), pads, dil, groups), rtol=tol, atol=tol)
    # weight gradient oracle: d(sum(conv(x) * gy))/dw, one einsum per group and offset
    want_w = np.zeros(ws)
    xpad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), pads[:2], pads[2:]))
    og, cg = ws[0] // groups, ws[1]
    for gi in range(groups):
        for i in range(ws[2]):
            for j in range(ws[3]):
                patch = xpad[:, gi * cg : (gi + 1) * cg, i * dilation : i * dilation + geom.ho, j * dilation :][
                    ..., : geom.wo
                ]
                want_w[gi * og : (gi + 1) * og, :, i, j] = np.einsum(
                    "noyx,ncyx->oc", gy[:, gi * og : (gi + 1) * og], patch
                )
    got_w = conv._weight_grad(xp, gy, geom, groups).reshape(ws)
    np.testing.assert_allclose(got_w, want_w, rtol=tol, atol=tol * 10)
    want_x = adjoint_oracle(gy, w, xs, (1, 1), pads, dil, groups)
    np.testing.assert_allclose(conv.transposed_input_grad(gy, w, geom, groups), want_x, rtol=tol, atol=tol)


def test_rows_rule():
    def geom(xs, k, stride=1, pad=1):
        return geometry("t", xs, (k, k), (stride, stride), (pad,) * 4, (1, 1))

    assert conv.use_rows(geom((32, 16, 32, 32), 3))  # ResNet block: rows of 34 for 32 outputs
    assert not conv.use_rows(geom((32, 16, 32, 32), 3, stride=2))
    assert not conv.use_rows(geom((64, 1, 28, 28), 5, pad=2))  # LeNet-5's first conv: 32 for 28
    assert not conv.use_rows(geom((64, 6, 14, 14), 5, pad=0))  # LeNet-5's second conv: 14 for 10


@pytest.mark.parametrize("shape", [(2, 2, 5, 20), (1, 3, 4, 22)])
def test_gradcheck_row_layout(shape):
    """conv2d by float64 gradcheck on shapes that take the row layout without forcing (3x3, pad 1, W >= 20)."""
    rng = np.random.default_rng(5)
    geom = geometry("t", shape, (3, 3), (1, 1), (1,) * 4, (1, 1))
    assert conv.use_rows(geom)
    x = minidl.tensor(rng.standard_normal(shape), requires_grad=True)
    w = minidl.tensor(rng.standard_normal((shape[1], shape[1], 3, 3)), requires_grad=True)
    b = minidl.tensor(rng.standard_normal(shape[1]), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, 1, 1), [x, w, b])


@pytest.mark.parametrize("threads", [1, 2])
def test_row_col2im_input_grad_holds_one_chunk_of_columns_at_a_time(monkeypatch, threads):
    """One chunk of column gradients alive per thread (with BLAS allowed two threads, chunks are shared out)."""
    import tracemalloc

    from threadpoolctl import threadpool_limits

    from minidl.kernels.workers import chunk_threads

    n, c, o, size, k = 16, 2, 3, 16, 3
    geom = geometry("conv2d", (n, c, size, size), (k, k), (1, 1), (1, 1, 1, 1), (1, 1))
    chunk = 4 * c * k * k * geom.ho * geom.wp * 4  # four images' float32 column gradients
    monkeypatch.setattr(conv, "ROW_BUDGET", chunk)
    rng = np.random.default_rng(0)
    gy = rng.standard_normal((n, o, geom.ho, geom.wo)).astype(np.float32)
    w = rng.standard_normal((o, c, k, k)).astype(np.float32)
    gz = conv._row_grad(gy, geom, 1)
    conv.row_col2im_input_grad(gz, w, geom, 1, c)  # compile (or load) the numba kernel outside the measurement
    with threadpool_limits(limits=threads, user_api="blas"), chunk_threads():
        tracemalloc.start()
        try:
            gx = conv.row_col2im_input_grad(gz, w, geom, 1, c)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    padded_planes = n * c * geom.hp * geom.wp * 4
    assert peak < padded_planes + gx.nbytes + (threads + 0.5) * chunk  # one more chunk alive would exceed it
    np.testing.assert_allclose(gx, adjoint_oracle(gy, w, gx.shape, (1, 1), (1,) * 4, (1, 1), 1), rtol=1e-4, atol=1e-4)
