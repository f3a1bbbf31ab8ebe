"""Compiled (numba) kernels behind minidl's fused ops, and the switch between them and numpy.

The ops in :mod:`minidl.ops` are written in plain vectorised numpy; that code is the reference.
Where the profile showed numpy to be slow (passes over memory that one loop can fuse, strided
copies, scatter-adds, many tiny calls), the op's ``Function`` hands the same job to a kernel
here, under the same name, with the same inputs and outputs:

========================  =====================================================================
``activation``            ReLU forward and backward (numpy's ``where`` with a scalar zero is
                          its slow path: 10x)
``softmax``               softmax over the last axis (attention), forward and backward
``pooling``               max pooling (values and argmax positions) and its scatter-add
                          backward, average pooling and its adjoint, the row scatter of an
                          embedding's backward
``conv``                  conv2d's row layout in one call per thread (pad, columns or direct
                          GEMMs through ``gemm``, copy out; the weight gradient), and col2im of
                          the input gradient straight into NCHW
``loss``                  softmax cross-entropy forward and backward, one pass over the logits
``normalization``         batch norm and layer norm: statistics, normalise + affine, backward
``optim``                 SGD (momentum, Nesterov), Adam/AdamW (AMSGrad), LARS and LAMB updates
                          and their norms, one pass each
``gemm``                  not a kernel: numpy's OpenBLAS GEMM callable from kernels, by address
``workers``               not a kernel: a job's disjoint parts on the rank's BLAS thread count
``allocator``             not a kernel: keeps freed memory for reuse (no page faults per step)
========================  =====================================================================

GEMMs run in numpy's BLAS: from numpy, or, in conv2d's fused row kernels, numpy's own OpenBLAS
called from the kernel (``gemm``), so a thread's whole share of the images runs without the GIL.
Every kernel is compiled with ``nogil=True`` (a communication thread runs beside it) and
``cache=True``, for float32 and float64 only, and runs on the calling thread (no ``parallel=True``:
a rank's threads belong to BLAS; above one BLAS thread, ``workers`` shares a big job's disjoint
parts among that many Python threads instead); see
:mod:`minidl.kernels.jit` for compilation, caching and the cross-process compile lock, and
``docs/performance.md`` for the measurements.

The switch: ``MINIDL_NUMBA=0`` in the environment, or :func:`set_enabled` / :func:`use_numba`
at run time, sends every op back to its numpy reference (for debugging, and to show the
difference). Kernel modules are imported on first use, so ``import minidl`` does not import numba.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

KERNEL_MODULES = ("activation", "conv", "loss", "normalization", "optim", "pooling", "softmax")


def _flag_from_env() -> bool:
    value = os.environ.get("MINIDL_NUMBA", "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"MINIDL_NUMBA must be 1 (use the numba kernels) or 0 (numpy references only), got {value!r}")


_available = importlib.util.find_spec("numba") is not None
_enabled = _flag_from_env() and _available


def enabled() -> bool:
    """Whether fused ops run their numba kernels (else their numpy references)."""
    return _enabled


def set_enabled(flag: bool) -> None:
    """Turn the numba kernels on or off for the whole process (``MINIDL_NUMBA`` sets the default)."""
    global _enabled
    if flag and not _available:
        raise RuntimeError("minidl.kernels: numba is not installed, so the kernels cannot be enabled")
    _enabled = bool(flag)


@contextlib.contextmanager
def use_numba(flag: bool = True) -> Iterator[None]:
    """Context manager: run the enclosed code with the kernels on (or off), then restore the setting."""
    previous = _enabled
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def wanted(array: np.ndarray) -> bool:
    """Whether an op on ``array`` should take the kernel path: kernels on and a float32/float64 array.

    (Other dtypes, e.g. float16 or integers for max pooling, always take the numpy path.)
    """
    return _enabled and array.dtype.char in "fd"


def warm_up(dtypes: Any = ("float32",), modules: Any = KERNEL_MODULES) -> dict[str, Any]:
    """Compile, or load from the disk cache, every kernel of ``modules`` for ``dtypes``.

    Not needed for correctness (kernels compile on first use); useful to pay the cost before
    timing anything, or to fill the cache once before launching many ranks. Returns
    :func:`status`.
    """
    for name in modules:
        importlib.import_module(f"minidl.kernels.{name}")
    from minidl.kernels.jit import REGISTRY

    for k in REGISTRY:
        for dt in dtypes:
            k.prepare(dt)
    return status()


def status() -> dict[str, Any]:
    """Per loaded kernel: dtypes ready, and how many signatures came from the disk cache or were compiled."""
    from minidl.kernels.jit import REGISTRY

    out = {}
    for k in REGISTRY:
        hits, misses = k.cache_counts()
        out[k.name] = {"dtypes": [str(d) for d in k._ready], "cache_loads": hits, "compiled": misses}
    return out


def __getattr__(name: str) -> Any:
    # kernel modules load on first use: importing minidl must not pay for importing numba
    if name in KERNEL_MODULES:
        return importlib.import_module(f"minidl.kernels.{name}")
    raise AttributeError(f"module 'minidl.kernels' has no attribute {name!r}")
