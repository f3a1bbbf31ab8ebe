"""Finding NaN and Inf in gradients or parameters, cheaply.

One dot product per array (BLAS, one pass over memory, no temporary) is finite exactly when the
array holds no NaN or Inf, unless the sum of squares overflows; only then is the array scanned
element by element, so a huge but finite gradient is never reported.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def is_finite(arr: np.ndarray) -> bool:
    """True unless ``arr`` holds a NaN or an Inf."""
    flat = arr.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.vdot(flat, flat)):
            return True
    return bool(np.isfinite(flat).all())


def first_nonfinite(named: Iterable[tuple[str, np.ndarray | None]]) -> str | None:
    """The name of the first array holding a NaN or an Inf (None entries are skipped), or None."""
    for name, arr in named:
        if arr is not None and arr.dtype.kind in "fc" and not is_finite(arr):
            return name
    return None
