"""The cross-rank mismatch check: do all ranks make the same call?

A collective whose ranks disagree on the element count, dtype, op, algorithm or root does not
fail cleanly over MPI: it hangs, truncates a message, or returns garbage. Before running, every
rank contributes a short signature of its call to one small MPI allreduce (the values and their
negations under MAX give each field's minimum and maximum in a single call); if any field
differs, every rank raises the same error. A rank whose own arguments were invalid contributes
that fact too, so the other ranks raise instead of waiting for it forever.

The exchange is non-blocking and waited for by :func:`collectives.watchdog.wait`, so a rank that
never arrives makes the others raise a timeout error instead of hanging (and they do not spin
while they wait). The check costs one 112-byte MPI allreduce per call (about as much as MPI's own allreduce of a
few bytes: the signature is built once per call pattern and cached, see :mod:`collectives.plans`);
turn it off with ``collectives.set_checks(False)`` or ``check=False`` for benchmarks.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from collectives.ops import BOOL, NUMERIC_DTYPES

enabled = True  # read directly on the hot path; change it with set_checks
_DTYPES = (*NUMERIC_DTYPES, BOOL)
FIELDS = ("collective", "element count", "dtype", "op", "algorithm", "root", "invalid rank")


class CollectiveMismatchError(RuntimeError):
    """Raised on every rank when the ranks called a collective with different arguments."""


def set_checks(on: bool) -> None:
    """Turn the cross-rank mismatch check on (the default) or off, for all later calls."""
    global enabled
    enabled = bool(on)


def checks_enabled(check: bool | None) -> bool:
    return enabled if check is None else bool(check)


def _code(name: str) -> int:
    return zlib.crc32(name.encode())


def dtype_code(dtype: np.dtype | None) -> int:
    try:
        return _DTYPES.index(dtype) + 1
    except ValueError:
        return 0


def signature(
    collective: str, count: int, dtype: np.dtype | None, op: str, algorithm: str, root: int, invalid: bool, rank: int
) -> np.ndarray:
    """The int64 signature of one call: fields then their negations."""
    fields = [
        _code(collective),
        count,
        dtype_code(dtype),
        _code(op),
        _code(algorithm),
        root,
        rank + 1 if invalid else 0,
    ]
    sig = np.array(fields + [0] * len(fields), dtype=np.int64)
    sig[len(fields) :] = -sig[: len(fields)]
    return sig


def start(comm: Any, sig: np.ndarray) -> tuple[np.ndarray, Any]:
    """Start combining the ranks' signatures: (where the result goes, the request to wait on)."""
    from mpi4py import MPI

    out = np.empty_like(sig)
    return out, comm.Iallreduce(sig, out, MPI.MAX)


def exchanger(comm: Any, sig: np.ndarray, out: np.ndarray) -> Any:
    """A call that starts combining ``sig`` across ranks into ``out`` and returns the request (bound once)."""
    from functools import partial

    from mpi4py import MPI

    return partial(comm.Iallreduce, sig, out, MPI.MAX)


def verify(combined: np.ndarray, names: dict[str, str], local_error: BaseException | None) -> None:
    """Raise on every rank if the combined signature shows a disagreement or an invalid call.

    ``names`` maps this rank's op and algorithm codes back to names for the message.
    """
    k = len(FIELDS)
    hi, lo = combined[:k], -combined[k:]
    bad = hi[6]
    if local_error is not None:
        raise local_error
    if bad:
        raise CollectiveMismatchError(
            f"{names['collective']}: rank {bad - 1} was called with invalid arguments (see the error on that rank);"
            " every rank stops"
        )
    for i, field in enumerate(FIELDS[:6]):
        if hi[i] != lo[i]:
            if field == "dtype":
                seen = f"{_DTYPES[lo[i] - 1]} and {_DTYPES[hi[i] - 1]}"
            elif field in ("element count", "root"):
                seen = f"from {lo[i]} to {hi[i]}"
            else:
                seen = f"this rank passed {names[field]!r}"
            raise CollectiveMismatchError(
                f"{names['collective']}: the ranks disagree on the {field} ({seen}); every rank must make the same"
                f" call (turn this check off with collectives.set_checks(False))"
            )
