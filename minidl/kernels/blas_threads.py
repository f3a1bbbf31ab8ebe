"""BLAS on one thread for the length of a block: conv2d's many small GEMMs.

conv2d issues one GEMM per image (or per chunk of a few images), each a few million
multiply-adds. With two OpenBLAS threads every such call hands half its work to the second
thread and waits for it: on the 2-core development machine a ResNet-block step took 104 ms at two
threads against 39 ms at one (quiet machine, docs/performance.md), and under load the waits
dominate (a 3 ms batch of per-image GEMMs took 50-400 ms). Inside :func:`single_threaded_blas`
those calls run on the calling thread only; the thread count is restored on leaving, so the
large GEMMs elsewhere (linear layers) keep every thread.

Setting the count is a direct call into the BLAS library (threadpoolctl's controller, found once):
about a microsecond. threadpoolctl (3.8) lets one Python thread at a time set OpenBLAS's
process-wide count: called from another thread while one holds it, the request is ignored and
the block runs with the threads BLAS has (slower, still correct). The first call makes the
calling thread the one that holds it, as ``minidl.threads.configure_threads`` already does for the
main thread of the trainer and the benchmark.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0
_saved: list[tuple[Any, int]] = []
_controllers: list[Any] | None = None


def _blas_controllers() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded now (numpy's), found once."""
    global _controllers
    if _controllers is None:
        import numpy  # noqa: F401  (loads the BLAS that threadpoolctl must find)
        from threadpoolctl import ThreadpoolController

        _controllers = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    return _controllers


def blas_threads() -> int:
    """The most threads any loaded BLAS library may use now (1 if none is found)."""
    return max((lib.num_threads for lib in _blas_controllers()), default=1)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[int]:
    """Run the block with BLAS on one thread; yields the thread count BLAS had before.

    Re-entrant and shared between Python threads: the first entry lowers the count, the last exit
    restores it.
    """
    global _depth
    with _lock:
        if _depth == 0:
            _saved[:] = [(lib, lib.num_threads) for lib in _blas_controllers()]
            for lib, n in _saved:
                if n != 1:
                    lib.set_num_threads(1)
        _depth += 1
        before = max((n for _, n in _saved), default=1)
    try:
        yield before
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lib, n in _saved:
                    if n != 1:
                        lib.set_num_threads(n)
