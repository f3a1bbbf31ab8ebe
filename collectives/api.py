"""The public entry points: ``allreduce`` on numpy arrays over an mpi4py communicator."""

from __future__ import annotations

from typing import Any

import numpy as np

from collectives.algorithms import ALGORITHMS
from collectives.ops import ReduceOp, get_op


def _world() -> Any:
    from mpi4py import MPI

    return MPI.COMM_WORLD


def check_buffer(name: str, buf: Any) -> np.ndarray:
    """The buffer as a flat view, or an error saying what is wrong with it."""
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(buf).__name__}")
    if not buf.flags.c_contiguous:
        raise ValueError(f"{name}: the buffer must be C-contiguous (use np.ascontiguousarray)")
    if not buf.flags.writeable:
        raise ValueError(f"{name}: the buffer is read-only; the result is written into it")
    return buf.reshape(-1)


def get_algorithm(name: str) -> Any:
    """The generator function of a registered algorithm; the error lists the valid names."""
    try:
        return ALGORITHMS[name].run
    except KeyError:
        raise ValueError(f"unknown allreduce algorithm {name!r}; expected one of {sorted(ALGORITHMS)}") from None


def allreduce(buf: np.ndarray, comm: Any = None, op: str | ReduceOp = "sum", algorithm: str = "ring") -> np.ndarray:
    """Reduce ``buf`` elementwise across all ranks of ``comm``, in place; returns ``buf``.

    ``comm`` defaults to ``MPI.COMM_WORLD``; ``op`` is one of "sum", "prod", "max", "min";
    ``algorithm`` names one of ``collectives.ALGORITHMS``.
    """
    from collectives.mpi_transport import MPITransport

    flat = check_buffer("allreduce", buf)
    reduce_op = get_op(op)
    algo = get_algorithm(algorithm)
    transport = MPITransport(comm if comm is not None else _world())
    transport.run(algo(transport, flat, reduce_op))
    return buf
