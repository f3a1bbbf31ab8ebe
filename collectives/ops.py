"""Reduction operators: what a collective combines elementwise, and how.

Every op is associative and commutative, which is what lets the algorithms reorder and regroup
contributions freely. ``avg`` is ``sum`` followed by a division by the number of ranks, done
once at the end on the fully reduced data (so every rank divides the same bits the same way):

- floating and complex dtypes: ``sum / p`` rounded once, as numpy's true division does;
- integer dtypes: the sum (wrapping on overflow, as numpy's integer arithmetic does) divided by p
  and rounded toward zero, as C integer division and NCCL's ``ncclAvg`` do (``-7 avg over 2``
  is ``-3``; numpy's ``//`` would give ``-4``);
- bool: not defined (use ``max`` for logical or, ``min`` for logical and).

MPI's logical and bitwise ops (``land``, ``lor``, ``lxor``, ``band``, ``bor``, ``bxor``) are here
too (:data:`LOGICAL_OPS`), on integer and bool dtypes only, with C's meaning: a logical op on
integers gives 1 or 0. They are not in :data:`OPS`, the arithmetic ops the simulator's checks,
the benchmarks and the property tests loop over; :func:`get_op` finds both.

Long double and complex long double (:data:`LONG_DOUBLE_DTYPES`) are accepted everywhere but
kept out of :data:`NUMERIC_DTYPES`, the list tools and tests loop over: on x86 a long double is
10 bytes of value padded to 16, and numpy leaves the padding as it found it, so two equal results
need not have equal bytes (a bitwise comparison of replicas would fail on noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The dtypes every collective accepts (plus bool for max/min): numpy's fixed-size numeric types.
NUMERIC_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t)
    for t in (
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
)
BOOL = np.dtype(bool)
# np.longdouble is float64 where C's long double is (MSVC, Apple silicon): then nothing extra.
LONG_DOUBLE_DTYPES: tuple[np.dtype, ...] = tuple(
    d for d in (np.dtype(np.longdouble), np.dtype(np.clongdouble)) if d not in NUMERIC_DTYPES
)
_ACCEPTED = frozenset((*NUMERIC_DTYPES, *LONG_DOUBLE_DTYPES))


@dataclass(frozen=True)
class ReduceOp:
    """An elementwise, associative and commutative reduction backed by a numpy ufunc.

    ``ordered`` says whether the op needs an ordering of values (so no complex numbers);
    ``logical`` whether it is defined on bool; ``integral`` whether it is defined on integers
    and bool only (MPI's logical and bitwise ops); ``average`` whether the result is divided by
    the number of ranks after the reduction (see the module docstring).
    """

    name: str
    ufunc: np.ufunc
    ordered: bool = False
    logical: bool = False
    integral: bool = False
    average: bool = False

    def __hash__(self) -> int:
        # Equal ops have equal names; hashing the name alone is a third of the generated
        # all-fields hash's cost, and the allreduce hot path hashes the op on every call.
        return hash(self.name)

    def reduce(self, inout: np.ndarray, incoming: np.ndarray) -> None:
        """``inout = inout (op) incoming``, in place, without allocating."""
        self.ufunc(inout, incoming, out=inout)

    def finalize(self, buf: np.ndarray, p: int) -> None:
        """What happens to the fully reduced buffer before it is returned (avg: divide by p)."""
        if not self.average or p == 1 or buf.size == 0:
            return
        if buf.dtype.kind in "iu":
            # Truncating division, exact: s - fmod(s, p) is a multiple of p and cannot overflow.
            rem = np.fmod(buf, buf.dtype.type(p))
            np.subtract(buf, rem, out=buf)
            np.floor_divide(buf, buf.dtype.type(p), out=buf)
        else:
            np.divide(buf, p, out=buf, casting="unsafe")

    def check_dtype(self, dtype: np.dtype) -> str | None:
        """Why this op cannot reduce ``dtype`` (a sentence), or None if it can."""
        if dtype == BOOL:
            if self.logical:
                return None
            return f"op {self.name!r} is not defined on bool; use 'max' (logical or) or 'min' (logical and)"
        if dtype not in _ACCEPTED:
            names = ", ".join(d.name for d in (*NUMERIC_DTYPES, *LONG_DOUBLE_DTYPES))
            return f"dtype {dtype} is not supported; expected one of {names} (bool for max/min)"
        if self.integral and dtype.kind not in "iu":
            return f"op {self.name!r} is defined on integer and bool dtypes only, not on {dtype}"
        if self.ordered and dtype.kind == "c":
            return f"op {self.name!r} needs ordered values and is not defined on complex dtype {dtype}"
        return None

    def reference(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The result a collective must produce, computed directly (for tests)."""
        out = self.ufunc.reduce(np.stack(arrays), axis=0).astype(arrays[0].dtype, copy=False)
        out = np.array(out)  # a writable array even for 0-d or empty inputs
        self.finalize(out, len(arrays))
        return out


SUM = ReduceOp("sum", np.add)
PROD = ReduceOp("prod", np.multiply)
MAX = ReduceOp("max", np.maximum, ordered=True, logical=True)
MIN = ReduceOp("min", np.minimum, ordered=True, logical=True)
AVG = ReduceOp("avg", np.add, average=True)

OPS: dict[str, ReduceOp] = {op.name: op for op in (SUM, PROD, MAX, MIN, AVG)}
LOGICAL_OPS: dict[str, ReduceOp] = {
    op.name: op
    for op in (
        ReduceOp("land", np.logical_and, logical=True, integral=True),
        ReduceOp("lor", np.logical_or, logical=True, integral=True),
        ReduceOp("lxor", np.logical_xor, logical=True, integral=True),
        ReduceOp("band", np.bitwise_and, logical=True, integral=True),
        ReduceOp("bor", np.bitwise_or, logical=True, integral=True),
        ReduceOp("bxor", np.bitwise_xor, logical=True, integral=True),
    )
}
_ALL_OPS = {**OPS, **LOGICAL_OPS}


def get_op(op: str | ReduceOp) -> ReduceOp:
    """Look up an operator by name; the error lists the valid names."""
    if isinstance(op, ReduceOp):
        return op
    try:
        return _ALL_OPS[op]
    except (KeyError, TypeError):
        raise ValueError(f"unknown reduction op {op!r}; expected one of {sorted(_ALL_OPS)}") from None
