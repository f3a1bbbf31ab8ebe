"""One setting for the threads a rank may use: BLAS (numpy's GEMMs) and numba kernels together.

With p ranks on a node of c cores, each rank should use about c/p threads: more and the ranks'
thread pools fight over the cores. OpenBLAS's idle threads spin while they wait for work, so
oversubscription is far worse than it looks: on the 2-core development machine a LeNet-5 step
took 66 ms with OpenBLAS's default 2 threads while other processes were busy, and 10.6 ms with
one thread. ``configure_threads`` is therefore called by the trainer before anything runs.

It also keeps freed memory for reuse (:func:`minidl.kernels.allocator.keep_freed_memory`): the
same per-rank runtime setup, and without it every step page-faults its large arrays in again.
"""

from __future__ import annotations

import os
from typing import Any

from minidl.kernels.allocator import keep_freed_memory

_limiter: Any = None


def default_threads(local_ranks: int = 1) -> int:
    """``MINIDL_THREADS`` if set, else the cores this process may use divided by ``local_ranks``."""
    env = os.environ.get("MINIDL_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MINIDL_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"MINIDL_THREADS must be a positive integer, got {env!r}")
        return n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_ranks))


def local_rank_count(comm: Any) -> int:
    """How many ranks of ``comm`` share this node (MPI's shared-memory split)."""
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()


def configure_threads(threads: int | None = None, comm: Any = None) -> int:
    """Limit BLAS and numba to ``threads`` threads (default: :func:`default_threads`); returns it."""
    global _limiter
    from threadpoolctl import threadpool_limits

    n = threads if threads is not None else default_threads(local_rank_count(comm) if comm is not None else 1)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    _limiter = threadpool_limits(limits=n, user_api="blas")
    keep_freed_memory()
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # numba is a dependency, but threads are still limited for BLAS
        pass
    return n
