"""Top Hessian eigenvalue by power iteration, against numpy's eigenvalues of a known Hessian."""

import numpy as np
import pytest

import minidl
from minidl.study.sharpness import hessian_vector_product, top_hessian_eigenvalue


def quadratic(n: int, seed: int):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.linspace(0.1, 1.0, n)
    eig[-1] = 5.0  # a clear gap so power iteration converges quickly
    a = (q * eig) @ q.T
    w = minidl.Tensor(rng.standard_normal((n, 1)), requires_grad=True)
    A = minidl.Tensor(a)
    return a, w, lambda: (w * (A @ w)).sum() * 0.5  # Hessian of 0.5 w^T A w is A


def test_hessian_vector_product_is_a_times_v():
    a, w, loss = quadratic(6, 0)
    v = np.arange(6, dtype=np.float64).reshape(6, 1)
    (hv,) = hessian_vector_product(loss, [w], [v])
    np.testing.assert_allclose(hv, a @ v, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_finds_the_top_eigenvalue(seed):
    a, w, loss = quadratic(8, seed)
    expected = np.linalg.eigvalsh(a).max()
    assert top_hessian_eigenvalue(loss, [w], iterations=100, tol=1e-10) == pytest.approx(expected, rel=1e-4)


def test_iterations_must_be_positive():
    _, w, loss = quadratic(3, 0)
    with pytest.raises(ValueError, match="iterations"):
        top_hessian_eigenvalue(loss, [w], iterations=0)
