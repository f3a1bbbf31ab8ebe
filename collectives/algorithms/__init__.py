"""The allreduce algorithms, one module each, registered by name."""

from collections.abc import Callable, Iterator

import numpy as np

from collectives.algorithms.ring import ring_allreduce
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

Algorithm = Callable[[Transport, np.ndarray, ReduceOp], Iterator[Step]]

ALGORITHMS: dict[str, Algorithm] = {
    "ring": ring_allreduce,
}

__all__ = ["ALGORITHMS", "Algorithm", "ring_allreduce"]
