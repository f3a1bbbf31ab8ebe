"""The row layout's fused kernels: numpy's BLAS GEMM called from numba, and conv2d through them."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import minidl
import minidl.functional as F
from minidl import kernels
from minidl.ops import conv

pytestmark = pytest.mark.skipif(not kernels.enabled(), reason="the numba kernels are off")


def _address(dtype):
    from minidl.kernels.gemm import gemm_address

    at = gemm_address(dtype)
    if not at:
        pytest.skip("numpy's BLAS is not an OpenBLAS with 64-bit integers")
    return at


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("beta", [0, 1])
def test_gemm_from_numba_is_numpys_product(dtype, trans_b, beta):
    import numba

    from minidl.kernels.gemm import gemm

    @numba.njit
    def product(at, trans_b, a, lda, k, b, beta, c):
        gemm(at, trans_b, c.shape[0], c.shape[1], k, a, lda, b, b.shape[1], beta, c, c.shape[1])

    rng = np.random.default_rng(0)
    wide = rng.standard_normal((5, 13)).astype(dtype)  # rows 13 apart, 11 used: lda > k
    a = wide[:, :11]
    b = rng.standard_normal((7, 11) if trans_b else (11, 7)).astype(dtype)
    c0 = rng.standard_normal((5, 7)).astype(dtype)
    c = c0.copy()
    product(_address(dtype), trans_b, wide, 13, 11, b, beta, c)
    expected = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64) + beta * c0
    np.testing.assert_allclose(c, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "c, o, w, dil",
    [
        (6, 4, 20, 1),  # few channels: gathered columns everywhere
        (16, 16, 20, 1),  # the ResNet block's: direct forward, transposed input gradient and weight gradient
        (20, 6, 20, 1),  # direct forward and weight gradient, gathered transposed input gradient (6 channels)
        (16, 8, 40, 2),  # dilated, direct: runs start i*dh*Wp + j*dw into the plane
    ],
)
def test_conv2d_row_layout_through_the_fused_kernels(monkeypatch, dtype, threads, c, o, w, dil):
    """Forward, input gradient (transposed) and weight gradient take the fused kernels and agree with
    a float64 numpy oracle written here (sums over the kernel offsets)."""
    _address(dtype)
    import minidl.kernels.conv as kc

    calls = []
    for name in ("row_correlate", "row_weight_grad"):
        original = getattr(kc, name)

        def spy(*args, _f=original, _name=name):
            calls.append(_name)
            return _f(*args)

        monkeypatch.setattr(kc, name, spy)
    rng = np.random.default_rng(3)
    n, h, p = 5, 9, dil  # padding = dilation keeps H x W; o <= c: the transposed route; Wp <= 1.1 Wo: row layout
    x0 = rng.standard_normal((n, c, h, w)).astype(dtype)
    w0 = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    gy = rng.standard_normal((n, o, h, w)).astype(dtype)
    monkeypatch.setattr(conv, "ROW_BUDGET", 2 * c * 9 * h * (w + 2 * p) * np.dtype(dtype).itemsize)  # 2 images a GEMM
    with threadpool_limits(limits=threads, user_api="blas"):
        x, wt = minidl.Tensor(x0, requires_grad=True), minidl.Tensor(w0, requires_grad=True)
        y = F.conv2d(x, wt, padding=p, dilation=dil)
        y.backward(minidl.Tensor(gy))
    geom = conv.geometry("t", x0.shape, (3, 3), (1, 1), (p,) * 4, (dil, dil))
    assert conv.use_rows(geom) and conv.input_grad_route(geom, c, o) == "transposed"
    assert sorted(set(calls)) == ["row_correlate", "row_weight_grad"] and calls.count("row_correlate") >= 2
    xp = np.pad(x0.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    want_y = np.zeros((n, o, h, w))
    want_gw = np.zeros((o, c, 3, 3))
    gxp = np.zeros_like(xp)
    g64 = gy.astype(np.float64)
    for i in range(3):
        for j in range(3):
            rows, cols = slice(i * dil, i * dil + h), slice(j * dil, j * dil + w)
            patch = xp[:, :, rows, cols]
            want_y += np.einsum("nchw,oc->nohw", patch, w0[:, :, i, j].astype(np.float64))
            want_gw[:, :, i, j] = np.einsum("nchw,nohw->oc", patch, g64)
            gxp[:, :, rows, cols] += np.einsum("nohw,oc->nchw", g64, w0[:, :, i, j])
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y.data, want_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(wt.grad.data, want_gw, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(x.grad.data, gxp[:, :, p:-p, p:-p], rtol=tol, atol=tol)
