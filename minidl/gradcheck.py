"""Numerical gradient checking in float64: the test oracle for every op's backward."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from minidl.tensor import Tensor


def _scalar(
    fn: Callable[..., Tensor], inputs: Sequence[Tensor], weights: np.ndarray | None
) -> tuple[Tensor, np.ndarray]:
    out = fn(*inputs)
    if weights is None:
        weights = np.random.default_rng(1234).standard_normal(out.shape)
    return (out * Tensor._make(weights)).sum(), weights


def numerical_grad(
    fn: Callable[..., Tensor], inputs: Sequence[Tensor], i: int, eps: float, weights: np.ndarray
) -> np.ndarray:
    """Central differences of sum(weights * fn(inputs)) with respect to ``inputs[i]``."""
    x = inputs[i].data
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        orig = flat[k]
        flat[k] = orig + eps
        plus = float(np.sum(weights * fn(*inputs).data))
        flat[k] = orig - eps
        minus = float(np.sum(weights * fn(*inputs).data))
        flat[k] = orig
        gflat[k] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> bool:
    """Check ``fn``'s analytic gradients against float64 central differences.

    ``fn`` maps the input tensors to one tensor; the check projects it on fixed random weights
    so every output element matters. Inputs must be float64 tensors; those with
    ``requires_grad=True`` are checked. Raises ``AssertionError`` naming the input and the worst
    element on failure; returns True otherwise.
    """
    for t in inputs:
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs, got {t.dtype}")
    for t in inputs:
        t.grad = None
    loss, weights = _scalar(fn, inputs, None)
    loss.backward()
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        expected = numerical_grad(fn, inputs, i, eps, weights)
        got = np.zeros_like(t.data) if t.grad is None else t.grad.data
        if not np.allclose(got, expected, atol=atol, rtol=rtol):
            k = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape) if got.size else ()
            raise AssertionError(
                f"gradcheck: input {i} (shape {t.shape}): analytic {got[k]!r} vs numerical {expected[k]!r} at {k}"
            )
    return True
