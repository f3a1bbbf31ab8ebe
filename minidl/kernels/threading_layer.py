"""Which threading layer numba's parallel kernels use (decided by measurement; see docs/performance.md)."""

from __future__ import annotations

import os

DEFAULT_LAYER = "omp"


def configure_layer() -> str:
    """Pick numba's threading layer before the first parallel kernel runs; returns the choice.

    ``NUMBA_THREADING_LAYER`` in the environment, if set, wins.
    """
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = DEFAULT_LAYER
    return numba.config.THREADING_LAYER
