"""conv2d runs its GEMMs with BLAS on one thread, and gives the threads back afterwards."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import minidl
import minidl.functional as F
from minidl.kernels import blas_threads
from minidl.kernels import workers as kernel_workers
from minidl.ops import conv

pytestmark = pytest.mark.skipif(not blas_threads._blas_controllers(), reason="no BLAS library found by threadpoolctl")


def test_single_threaded_blas_lowers_then_restores_the_count():
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads.blas_threads() == 2
        with blas_threads.single_threaded_blas() as before:
            assert before == 2
            assert blas_threads.blas_threads() == 1
            with blas_threads.single_threaded_blas() as inner:  # nested: still one thread, restored only at the end
                assert inner == 2
            assert blas_threads.blas_threads() == 1
        assert blas_threads.blas_threads() == 2


def test_single_threaded_blas_restores_after_an_error():
    with threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(RuntimeError, match="boom"):
            with blas_threads.single_threaded_blas():
                raise RuntimeError("boom")
        assert blas_threads.blas_threads() == 2


def test_conv2d_gemms_run_on_one_blas_thread(monkeypatch):
    counts = []
    for name in ("_correlate", "_weight_grad", "transposed_input_grad"):
        original = getattr(conv, name)

        def spy(*args, _f=original):
            counts.append(blas_threads.blas_threads())
            return _f(*args)

        monkeypatch.setattr(conv, name, spy)
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    w = minidl.tensor(rng.standard_normal((3, 3, 3, 3)).astype(np.float32), requires_grad=True)
    with threadpool_limits(limits=2, user_api="blas"):
        F.conv2d(x, w, None, 1, 1).sum().backward()
        assert blas_threads.blas_threads() == 2
    assert len(counts) >= 3 and set(counts) == {1}  # forward, weight and input gradients


@pytest.mark.parametrize(
    "shape, cout, kwargs",
    [
        ((8, 16, 32, 32), 16, {"padding": 1}),  # the ResNet block's: row layout, transposed input gradient
        ((64, 6, 14, 14), 16, {}),  # LeNet-5's second: im2col per image, row col2im input gradient
        ((64, 16, 16, 16), 8, {"stride": 2, "padding": 1}),  # strided: im2col per image, GEMM + col2im
    ],
)
@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernels", "numpy-chunks"])
def test_chunks_shared_among_threads_give_the_same_bits(monkeypatch, shape, cout, kwargs, fused):
    """With BLAS allowed two threads, conv2d shares its image chunks between two threads instead: the
    forward and every gradient must be bitwise what one thread computes (each chunk is independent,
    the weight gradient's partial sums are added in chunk order). Both with the row layout's fused
    numba kernels and with numpy driving each chunk (the path without a 64-bit-integer OpenBLAS)."""
    if not fused:
        monkeypatch.setattr(conv, "_fused_gemm", lambda *args: 0)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(shape).astype(np.float32)
    w0 = (rng.standard_normal((cout, shape[1], 3, 3)) * 0.1).astype(np.float32)

    def run(threads):
        with threadpool_limits(limits=threads, user_api="blas"):
            x, w = minidl.Tensor(x0.copy(), requires_grad=True), minidl.Tensor(w0.copy(), requires_grad=True)
            y = F.conv2d(x, w, **kwargs)
            (y * y).sum().backward()
        return y.data, x.grad.data, w.grad.data

    original = conv.map_parts
    workers = []

    def spy(fn, chunks, n=None):
        workers.append(min(kernel_workers.threads(), len(chunks)))
        return original(fn, chunks, n)

    conv.map_parts = spy
    try:
        one = run(1)
        two = run(2)
    finally:
        conv.map_parts = original
    assert max(workers) == 2, workers  # the chunks really were shared at 2 threads
    for a, b, name in zip(one, two, ("output", "input gradient", "weight gradient"), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
