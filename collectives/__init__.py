"""collectives: hand-written allreduce algorithms over mpi4py point-to-point messages.

Each algorithm is written once against a small point-to-point interface
(:mod:`collectives.transport`) and runs over MPI or in a simulator.
"""

import warnings
from typing import Any

from collectives.abort import abort_on_error
from collectives.agreement import CollectiveMismatchError, set_checks
from collectives.algorithms import ALGORITHMS, AlgorithmSpec, Constraints, Cost, algorithm_names, register, unregister
from collectives.algorithms.chunking import chunk_bounds
from collectives.api import allgather, allreduce, broadcast, explain, reduce, reduce_scatter
from collectives.link import Link, parse_link
from collectives.ops import OPS, ReduceOp
from collectives.watchdog import CollectiveTimeoutError, set_timeout


def iallreduce(buf, comm=None, op="sum", algorithm="ring", *, progress=None, check=None, timeout=None):
    """Start an allreduce and return a request with ``test()`` and ``wait()``; see :mod:`collectives.nonblocking`."""
    from collectives.nonblocking import iallreduce as start

    return start(buf, comm, op, algorithm, progress=progress, check=check, timeout=timeout)


def hierarchical_allreduce(buf, comm=None, op="sum", algorithm="ring", **kwargs):
    """Allreduce node by node (reduce in a node, ``algorithm`` among node leaders, broadcast in a node);
    see :mod:`collectives.hierarchical`. Keyword arguments: ``ranks_per_node``, ``link``, ``check``, ``timeout``."""
    from collectives.hierarchical import hierarchical_allreduce as run

    return run(buf, comm, op, algorithm, **kwargs)


def wrap(comm, algorithm="ring", *, check=None, timeout=None):
    """An mpi4py intracommunicator whose collectives run our algorithms; see :mod:`collectives.mpi_wrap`."""
    from collectives.mpi_wrap import wrap as make

    return make(comm, algorithm, check=check, timeout=timeout)


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":  # the registry's old second name
        warnings.warn(
            "collectives.REGISTRY is deprecated; use collectives.ALGORITHMS", DeprecationWarning, stacklevel=2
        )
        return ALGORITHMS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALGORITHMS",
    "OPS",
    "AlgorithmSpec",
    "CollectiveMismatchError",
    "CollectiveTimeoutError",
    "Constraints",
    "Cost",
    "Link",
    "ReduceOp",
    "abort_on_error",
    "algorithm_names",
    "allgather",
    "allreduce",
    "broadcast",
    "chunk_bounds",
    "explain",
    "hierarchical_allreduce",
    "iallreduce",
    "parse_link",
    "reduce",
    "reduce_scatter",
    "register",
    "set_checks",
    "set_timeout",
    "unregister",
    "wrap",
]
