"""Gradient clipping by global norm (Pascanu et al. 2013), as ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from minidl.tensor import Tensor


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[np.ndarray]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad.data for p in params if p.grad is not None]


def get_total_norm(grads: Iterable[np.ndarray], norm_type: float = 2.0) -> float:
    """The ``norm_type``-norm of all arrays together, as if concatenated into one vector."""
    norm_type = float(norm_type)
    grads = list(grads)
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        return float(max(np.abs(g).max() if g.size else 0.0 for g in grads))
    if norm_type <= 0:
        raise ValueError(f"norm_type must be positive or inf, got {norm_type}")
    # per-array norms in float64 first: one huge concatenation would be a needless copy
    per = np.array([np.linalg.norm(g.ravel().astype(np.float64, copy=False), ord=norm_type) for g in grads])
    return float(np.linalg.norm(per, ord=norm_type))


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale all gradients in place so their global norm is at most ``max_norm``; return the norm before.

    As PyTorch: the scale is ``max_norm / (norm + 1e-6)``, applied only when below 1. With
    ``error_if_nonfinite=True`` a NaN or infinite norm raises instead of spreading NaNs.
    """
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    grads = _grads(parameters)
    total = get_total_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
            "set error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor._make(np.asarray(total, dtype=grads[0].dtype if grads else np.float32))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
