"""Data-parallel helpers: the only place minidl talks to the interconnect (via ``collectives``).

Every rank holds a full replica of the model and trains on its own shard of each batch; after
backward, gradients are averaged with an allreduce so all replicas take the same step.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import collectives
from minidl.nn.module import Module
from minidl.tensor import Tensor


def world() -> Any:
    """``MPI.COMM_WORLD`` (works without mpiexec too: then it has one rank)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD


def broadcast_parameters(model: Module, comm: Any, root: int = 0) -> None:
    """Overwrite every rank's parameters with those of ``root`` so replicas start identical."""
    for p in model.parameters():
        comm.Bcast(p.data, root=root)


class GradientAverager:
    """Averages a model's gradients across ranks with one allreduce over a flat buffer.

    The buffer is allocated once; each step the gradients are copied in, reduced, and handed
    back as views of it. ``comm_seconds`` accumulates the time spent in the allreduce.
    """

    def __init__(self, model: Module, comm: Any, algorithm: str = "ring") -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.comm = comm
        self.algorithm = algorithm
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise TypeError(f"GradientAverager: parameters have mixed dtypes {sorted(map(str, dtypes))}")
        self.flat = np.zeros(sum(p.size for p in self.params), dtype=dtypes.pop())
        self.views = []
        offset = 0
        for p in self.params:
            self.views.append(self.flat[offset : offset + p.size].reshape(p.shape))
            offset += p.size
        self.comm_seconds = 0.0

    def __call__(self) -> None:
        for p, view in zip(self.params, self.views):
            if p.grad is None:
                view[...] = 0  # a parameter unused this step contributes nothing
            else:
                np.copyto(view, p.grad.data)
        start = time.perf_counter()
        collectives.allreduce(self.flat, self.comm, op="sum", algorithm=self.algorithm)
        self.comm_seconds += time.perf_counter() - start
        self.flat *= 1.0 / self.comm.Get_size()
        for p, view in zip(self.params, self.views):
            p.grad = Tensor._make(view)
