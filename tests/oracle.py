"""The result an allreduce must produce, computed independently of ``collectives.ops``.

The algorithms (and ``ReduceOp.reference``) reduce with numpy's typed ufunc loops in the
buffer's own dtype. An oracle sharing that code would agree with a bug in it, so this one works
from the rules as stated in the ops module's docstring, with other arithmetic: the inputs must
be exact-valued (small integers, or Gaussian integers for complex dtypes, stored in any dtype);
they are widened to Python numbers, reduced with Python's own ``+``, ``*``, ``max`` and ``min``
(in numpy object arrays, so there is no per-element Python loop), and narrowed once:

- integer dtypes wrap modulo 2**bits; ``avg`` divides the sum by p rounding toward zero;
- floating dtypes: ``avg`` is the exact fraction sum/p rounded to float64, then to the dtype
  (float64 carries more than twice float32's and float16's bits, so rounding twice gives the
  correctly rounded quotient);
- complex dtypes: ``avg`` is numpy's complex true division of the exact sum by p. That is not
  the correctly rounded quotient: numpy multiplies by the rounded reciprocal 1/p, so
  (-3+0j)/5 is -0.6000000000000001; every rank divides the same bits, which is what matters;
- bool (max and min only): logical or and logical and, as 0/1.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

_COMBINE = {
    "sum": np.frompyfunc(operator.add, 2, 1),
    "avg": np.frompyfunc(operator.add, 2, 1),
    "prod": np.frompyfunc(operator.mul, 2, 1),
    "max": np.frompyfunc(builtins.max, 2, 1),
    "min": np.frompyfunc(builtins.min, 2, 1),
}


def _exact(a: np.ndarray) -> np.ndarray:
    """``a`` as an object array of Python ints (or complex numbers with integer parts)."""
    if a.dtype.kind in "biu":
        return a.astype(np.int64 if a.dtype.kind != "u" else np.uint64).astype(object)
    parts = [a.real, a.imag] if a.dtype.kind == "c" else [a]
    for part in parts:
        if not np.all(np.isfinite(part)) or not np.array_equal(part, np.trunc(part)):
            raise ValueError(f"oracle: inputs must be exact integers, got {a.ravel()[:6]} ({a.dtype})")
    if a.dtype.kind == "c":
        return np.frompyfunc(complex, 2, 1)(a.real.astype(np.int64).astype(object), a.imag.astype(np.int64))
    return a.astype(np.int64).astype(object)


def _wrap(bits: int, signed: bool):
    span, low = 1 << bits, -(1 << (bits - 1)) if signed else 0
    return np.frompyfunc(lambda v: (v - low) % span + low, 1, 1)


def _truncating_average(p: int):
    return np.frompyfunc(lambda s: abs(s) // p if s >= 0 else -(abs(s) // p), 1, 1)


def _true_average(p: int):
    return np.frompyfunc(lambda s: float(Fraction(s, p)), 1, 1)


def expected_allreduce(op: str, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """What every rank must hold after allreducing ``arrays`` (one per rank) with ``op``."""
    dtype = arrays[0].dtype
    p = len(arrays)
    total = _COMBINE[op].reduce(np.stack([_exact(a) for a in arrays]), axis=0)
    total = np.asarray(total, dtype=object).reshape(arrays[0].shape)
    if dtype.kind in "iu":
        total = _wrap(8 * dtype.itemsize, dtype.kind == "i")(total) if total.size else total
        if op == "avg" and total.size:
            total = _truncating_average(p)(total)
    elif op == "avg" and total.size and dtype.kind == "c":
        return np.asarray(total, dtype=object).astype(dtype) / dtype.type(p)
    elif op == "avg" and total.size:
        total = _true_average(p)(total)
    return np.asarray(total, dtype=object).astype(dtype)
