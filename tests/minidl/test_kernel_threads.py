"""With BLAS allowed two threads, the batch-norm and ReLU kernels share their work between two threads:
the results must be bitwise what one thread computes, and the work must really have been split."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import minidl
import minidl.functional as F
from minidl import kernels
from minidl.kernels import blas_threads, workers

pytestmark = [
    pytest.mark.skipif(not blas_threads._blas_controllers(), reason="no BLAS library found by threadpoolctl"),
    pytest.mark.skipif(not kernels.enabled(), reason="the numba kernels are off"),
]


@pytest.fixture
def parts(monkeypatch):
    """The number of parts of every shared job, in call order."""
    seen = []
    original = workers.map_parts

    def spy(fn, items, n=None):
        seen.append(min(len(items), workers.threads() if n is None else n))
        return original(fn, items, n)

    monkeypatch.setattr(workers, "map_parts", spy)
    return seen


def _run_at(threads, fn):
    with threadpool_limits(limits=threads, user_api="blas"):
        return fn()


def test_split_gives_disjoint_slices_covering_the_range():
    with threadpool_limits(limits=2, user_api="blas"):
        assert workers.split(16, 4 * workers.MIN_PART) == [slice(0, 8), slice(8, 16)]
        assert workers.split(3, 10 * workers.MIN_PART) == [slice(0, 1), slice(1, 3)]
        assert workers.split(16, workers.MIN_PART) == [slice(0, 16)]  # too small to share
        assert workers.split(1, 10 * workers.MIN_PART) == [slice(0, 1)]
    with threadpool_limits(limits=1, user_api="blas"):
        assert workers.split(16, 4 * workers.MIN_PART) == [slice(0, 16)]


def test_map_parts_keeps_the_order_and_runs_on_other_threads():
    import threading

    names = []

    def fn(i):
        names.append(threading.current_thread().name)
        return i * i

    assert workers.map_parts(fn, list(range(7)), 2) == [i * i for i in range(7)]
    assert any(name.startswith("minidl-worker") for name in names)
    assert threading.current_thread().name in names


def test_map_parts_inside_a_part_runs_serially_instead_of_waiting_on_its_own_pool():
    import threading

    def inner(i):
        return (i, threading.current_thread().name)

    def outer(i):
        return workers.map_parts(inner, [i, i + 10], 2)

    results = workers.map_parts(outer, [0, 1], 2)  # a deadlock here would hang: run under the suite's timeout
    assert [[v for v, _ in part] for part in results] == [[0, 10], [1, 11]]
    for part in results:
        assert len({name for _, name in part}) == 1  # each inner job ran on the thread of its outer part


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_at_two_threads_gives_the_same_bits(dtype, parts):
    rng = np.random.default_rng(1)
    x0 = (rng.standard_normal((32, 16, 32, 32)) * 3 + 1).astype(dtype)  # the ResNet block's: shared at two threads
    g0 = rng.standard_normal(x0.shape).astype(dtype)
    w0 = rng.standard_normal(16).astype(dtype)
    b0 = rng.standard_normal(16).astype(dtype)

    def run():
        x = minidl.Tensor(x0.copy(), requires_grad=True)
        w, b = minidl.Tensor(w0.copy(), requires_grad=True), minidl.Tensor(b0.copy(), requires_grad=True)
        rm, rv = np.zeros(16, dtype), np.ones(16, dtype)
        y = F.batch_norm(x, rm, rv, w, b, training=True)
        y.backward(minidl.Tensor(g0))
        return y.data, x.grad.data, w.grad.data, b.grad.data, rm, rv

    one = _run_at(1, run)
    assert set(parts) == {1}
    parts.clear()
    two = _run_at(2, run)
    assert parts == [2, 2], parts  # forward (statistics, normalise) and backward: each on two threads
    for a, b, name in zip(one, two, ("output", "input grad", "weight grad", "bias grad", "mean", "var"), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # and right: against the textbook formulas in float64
    x64 = x0.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3), keepdims=True), x64.var(axis=(0, 2, 3), keepdims=True)
    xhat = (x64 - mean) / np.sqrt(var + 1e-5)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(two[0], xhat * w0.reshape(1, -1, 1, 1) + b0.reshape(1, -1, 1, 1), rtol=tol, atol=tol)
    np.testing.assert_allclose(two[2], (g0 * xhat).sum(axis=(0, 2, 3)), rtol=tol, atol=tol * 100)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_at_two_threads_gives_the_same_bits(dtype, parts):
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((8, 16, 96, 96)).astype(dtype)  # over 1M floats: shared at two threads
    x0.reshape(-1)[::97] = 0
    g0 = rng.standard_normal(x0.shape).astype(dtype)

    def run():
        x = minidl.Tensor(x0.copy(), requires_grad=True)
        y = F.relu(x)
        y.backward(minidl.Tensor(g0))
        return y.data, x.grad.data

    one = _run_at(1, run)
    parts.clear()
    two = _run_at(2, run)
    assert parts == [2, 2], parts  # forward and backward each on two threads
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(two[0], np.where(x0 > 0, x0, 0))
    np.testing.assert_array_equal(two[1], np.where(x0 > 0, g0, 0))
