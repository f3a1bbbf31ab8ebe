"""Flatten parameters into one vector and back (for second-order methods and inspection)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from minidl.tensor import Tensor


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameter values, concatenated in order into one 1-D tensor (a copy)."""
    params = list(parameters)
    if not params:
        return Tensor._make(np.zeros(0, dtype=np.float32))
    return Tensor._make(np.concatenate([p.data.ravel() for p in params]))


def vector_to_parameters(vec: Tensor | np.ndarray, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of ``vec`` into the parameters, in order."""
    arr = vec.data if isinstance(vec, Tensor) else np.asarray(vec)
    params = list(parameters)
    total = sum(p.size for p in params)
    if arr.ndim != 1 or arr.size != total:
        raise ValueError(f"vector_to_parameters: expected a 1-D vector of {total} elements, got shape {arr.shape}")
    offset = 0
    for p in params:
        p.data[...] = arr[offset : offset + p.size].reshape(p.shape)
        offset += p.size
