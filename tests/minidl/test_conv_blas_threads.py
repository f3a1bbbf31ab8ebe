"""conv2d runs its GEMMs with BLAS on one thread, and gives the threads back afterwards."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import minidl
import minidl.functional as F
from minidl.kernels import blas_threads
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
