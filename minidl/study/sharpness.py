"""Sharpness of a minimum: the top Hessian eigenvalue by power iteration on Hessian-vector products.

Keskar et al. (2017) found that large-batch training tends to end in sharper minima (larger top
eigenvalue of the loss Hessian) that generalise worse. The Hessian of even a small MLP is never
formed: each iteration asks autograd for H v = d(g . v)/dw with ``minidl.grad(create_graph=True)``,
which costs about two backward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import minidl
from minidl.tensor import Tensor


def hessian_vector_product(
    loss_fn: Callable[[], Tensor], params: Sequence[Tensor], v: list[np.ndarray]
) -> list[np.ndarray]:
    """H v for the Hessian of ``loss_fn()`` with respect to ``params`` (v given per parameter)."""
    loss = loss_fn()
    grads = minidl.grad(loss, list(params), create_graph=True)
    dot = sum((g * Tensor(vi)).sum() for g, vi in zip(grads, v))
    return [h.data.astype(np.float64) for h in minidl.grad(dot, list(params))]


def top_hessian_eigenvalue(
    loss_fn: Callable[[], Tensor], params: Sequence[Tensor], iterations: int = 20, seed: int = 0, tol: float = 1e-3
) -> float:
    """The eigenvalue of largest magnitude of the loss Hessian (the top one at a minimum).

    Power iteration from a seeded random direction; stops early once the Rayleigh quotient
    changes by less than ``tol`` (relative).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    rng = np.random.default_rng(seed)
    v = [rng.standard_normal(p.shape) for p in params]
    norm = np.sqrt(sum(float((x * x).sum()) for x in v))
    v = [x / norm for x in v]
    eig = 0.0
    for _ in range(iterations):
        hv = hessian_vector_product(loss_fn, params, [x.astype(p.data.dtype) for x, p in zip(v, params)])
        new = sum(float((h * x).sum()) for h, x in zip(hv, v))  # Rayleigh quotient v.Hv with |v| = 1
        norm = np.sqrt(sum(float((h * h).sum()) for h in hv))
        if norm == 0.0:
            return 0.0
        v = [h / norm for h in hv]
        converged = abs(new - eig) <= tol * abs(new)
        eig = new
        if converged:
            break
    return eig
