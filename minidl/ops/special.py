"""Special functions numpy lacks (the error function), compiled with numba on first use."""

from __future__ import annotations

import math
from functools import cache

import numpy as np


@cache
def _erf_kernel():  # compiled lazily: importing minidl must not pay numba's start-up cost
    import numba

    @numba.njit(nogil=True, cache=True)
    def erf_into(x: np.ndarray, out: np.ndarray) -> None:
        for i in range(x.size):
            out[i] = math.erf(x[i])

    return erf_into


def erf(x: np.ndarray) -> np.ndarray:
    """The error function of a float array, to libm accuracy, in ``x``'s dtype."""
    x = np.asarray(x)
    work = np.ascontiguousarray(x, dtype=np.float64 if x.dtype != np.float32 else np.float32).reshape(-1)
    out = np.empty_like(work)
    _erf_kernel()(work, out)
    return out.reshape(x.shape).astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=False)
