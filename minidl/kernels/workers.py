"""The rank's threads for work outside BLAS: disjoint parts of one job run on a small pool of Python threads.

A rank's threads belong to BLAS (``minidl.threads.configure_threads`` sets the count). A large GEMM
uses them inside BLAS; conv2d's per-image GEMMs are too small for that, and numba's own threading
layer fights OpenBLAS's spinning workers (docs/performance.md, "Threads: the trap"). So when BLAS
may use several threads, minidl's big loops (conv2d's image chunks, the batch-norm and ReLU kernels)
split their output into disjoint parts and run them on that many threads of one pool: numpy's GEMMs
and copies and the ``nogil`` numba kernels release the GIL, so the parts run at once. Each part
writes only its own slice, and any reduction keeps its one-thread order, so the result is bitwise
what one thread computes. At one BLAS thread nothing is shared out and no pool is started.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from minidl.kernels.blas_threads import blas_threads, single_threaded_blas

T = TypeVar("T")

# floats moved (read plus written, summed over a job's passes) below which a part is not worth a thread.
# Measured at two threads on cold data: a one-pass ReLU over 512k float32 took 0.27 ms split against
# 0.22 ms whole (the hand-off is about 25 us, and the pass is memory-bound), over 8M floats 2.6
# against 3.8 ms; batch norm (five floats moved per element) gained on the ResNet block's 512k floats
# (forward 1.67 -> 1.41 ms, backward 1.76 -> 1.33 per step). So ReLU is shared from 1M floats, batch
# norm from about 420k.
MIN_PART = 1 << 20


_workers = 0  # inside chunk_threads: the threads BLAS had before it was lowered to one (0: outside)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def threads() -> int:
    """How many threads a job may be shared among now: BLAS's thread count (as it was before a
    :func:`chunk_threads` block lowered it)."""
    return _workers or blas_threads()


@contextlib.contextmanager
def chunk_threads() -> Iterator[int]:
    """BLAS on one thread for the block, and :func:`map_parts` sharing among as many threads as BLAS had.

    For loops of small GEMMs (conv2d's image chunks): too small to split inside BLAS (two BLAS threads
    on one made a ResNet-block step 2.7x slower), but independent, so each thread runs whole GEMMs
    single-threaded. Yields the number of threads.
    """
    global _workers
    with single_threaded_blas() as before:
        saved, _workers = _workers, max(1, before)
        try:
            yield _workers
        finally:
            _workers = saved


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            if _pool is not None:
                _pool.shutdown(wait=False)  # its idle threads exit; jobs already queued still run
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="minidl-worker")
        return _pool


_local = threading.local()  # .inside: this thread is running a part for map_parts


def _run(fn: Callable[[T], Any], run: Sequence[T]) -> list[Any]:
    _local.inside = True
    try:
        return [fn(item) for item in run]
    finally:
        _local.inside = False


def map_parts(fn: Callable[[T], Any], items: Sequence[T], workers: int | None = None) -> list[Any]:
    """``[fn(item) for item in items]``, contiguous runs of items on up to ``workers`` (default
    :func:`threads`) threads, this one included; results in order.

    ``fn`` must only write what its own item owns. Called from inside a part, it runs serially.
    """
    n = min(threads() if workers is None else workers, len(items))
    if n <= 1 or getattr(_local, "inside", False):  # a part sharing again would wait on its own pool
        return [fn(item) for item in items]
    runs = [items[i * len(items) // n : (i + 1) * len(items) // n] for i in range(n)]
    futures = [_executor(n - 1).submit(_run, fn, run) for run in runs[1:]]
    results = _run(fn, runs[0])
    for future in futures:
        results.extend(future.result())
    return results


def split(n: int, work: int) -> list[slice]:
    """``range(n)`` as at most :func:`threads` consecutive slices, fewer when a part would move less
    than MIN_PART floats of the job's ``work`` (floats read plus written, over all its passes); one
    slice at one thread."""
    if work < 2 * MIN_PART:  # too small to share: not even the thread count is asked (a call into BLAS)
        return [slice(0, n)]
    parts = max(1, min(threads(), n, work // MIN_PART))
    return [slice(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def share(fn: Callable[[slice], Any], n: int, work: int) -> None:
    """``fn(s)`` for the slices of :func:`split` (``n``, ``work``), on that many threads at once.

    ``fn`` must write only the part of the output its slice owns.
    """
    if work < 2 * MIN_PART:  # the common small case, at the cost of one comparison
        fn(slice(0, n))
        return
    parts = split(n, work)
    map_parts(fn, parts, len(parts))
