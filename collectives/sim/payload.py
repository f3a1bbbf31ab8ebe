"""What simulated buffers hold: real numbers, nothing at all (sizes only), or symbols (symbolic.py).

The algorithm never sees the difference: it slices buffers, reads ``size`` and ``dtype``, and
calls ``t.reduce``, ``t.copy`` and the message functions, which land here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from collectives.ops import ReduceOp
from collectives.sim.errors import MessageError, PortabilityError


class Payload:
    """The data side of a simulation; subclasses decide what a buffer is and what moving it does."""

    name = "payload"
    tracks_data = True  # False: no data, no hazard tracking (sizes-only mode)

    def scratch(self, rank: int, n: int, dtype: Any) -> Any:
        raise NotImplementedError

    def deliver(self, send_buf: Any, recv_buf: Any) -> None:
        """Copy a message's data from the sender's buffer into the receiver's."""

    def reduce(self, rank: int, op: ReduceOp, inout: Any, incoming: Any) -> None:
        """``inout = op(inout, incoming)``."""

    def copy(self, rank: int, dst: Any, src: Any) -> None:
        """``dst[...] = src``."""

    def region(self, buf: Any) -> tuple[int, int]:
        """The address range ``[lo, hi)`` a buffer covers, for overlap (hazard) checks."""
        raise NotImplementedError


def _check_sizes(what: str, rank: int, a: Any, b: Any) -> None:
    if a.size != b.size:
        raise MessageError(f"rank {rank}: t.{what} needs buffers of equal size, got {a.size} and {b.size} elements")


class RealPayload(Payload):
    """Real numpy data: messages copy bytes, reductions compute. Scratch starts as garbage.

    Scratch space is filled with a poison value (NaN, or 0x5A bytes for integers) so that an
    algorithm that reduces or sends scratch it never wrote gets a visibly wrong result.
    """

    name = "real"

    def scratch(self, rank: int, n: int, dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        out = np.empty(n, dtype=dtype)
        if dtype.kind in "fc":
            out.fill(np.nan)
        else:
            out.view(np.uint8).fill(0x5A)
        return out

    def deliver(self, send_buf: np.ndarray, recv_buf: np.ndarray) -> None:
        if send_buf.dtype == recv_buf.dtype:
            np.copyto(recv_buf[: send_buf.size], send_buf)
        else:  # MPITransport moves raw bytes, so a dtype mismatch is a byte copy there too
            recv_buf.view(np.uint8)[: send_buf.nbytes] = send_buf.view(np.uint8)

    def reduce(self, rank: int, op: ReduceOp, inout: np.ndarray, incoming: np.ndarray) -> None:
        _check_sizes("reduce", rank, inout, incoming)
        op.reduce(inout, incoming)

    def copy(self, rank: int, dst: np.ndarray, src: np.ndarray) -> None:
        _check_sizes("copy", rank, dst, src)
        np.copyto(dst, src)

    def region(self, buf: np.ndarray) -> tuple[int, int]:
        lo = buf.__array_interface__["data"][0]
        return lo, lo + buf.nbytes


class SizesPayload(Payload):
    """No data at all: buffers are read-only, zero-stride numpy arrays of the right size and dtype.

    Slicing, ``size``, ``dtype`` and ``nbytes`` behave as usual and cost nothing, so a simulation
    of a gigabyte allreduce on thousands of ranks needs no memory for data. Writing to one raises
    (numpy: "assignment destination is read-only"), which exposes algorithms that touch data
    behind the transport's back.
    """

    name = "sizes"
    tracks_data = False

    @staticmethod
    def buffer(n: int, dtype: Any) -> np.ndarray:
        return as_strided(np.zeros(1, dtype=dtype), shape=(n,), strides=(0,), writeable=False)

    def scratch(self, rank: int, n: int, dtype: Any) -> np.ndarray:
        return self.buffer(n, dtype)

    def reduce(self, rank: int, op: ReduceOp, inout: Any, incoming: Any) -> None:
        if inout.size != incoming.size:
            _check_sizes("reduce", rank, inout, incoming)

    def copy(self, rank: int, dst: Any, src: Any) -> None:
        if dst.size != src.size:
            _check_sizes("copy", rank, dst, src)


def check_portable_buffer(rank: int, buf: Any, expected_type: type, what: str) -> None:
    """Raise a PortabilityError if an algorithm passed something other than a slice of its buffers."""
    if type(buf) is not expected_type:
        raise PortabilityError(
            f"rank {rank}: {what} got a {type(buf).__name__}; algorithms may only pass slices of their "
            f"buffer or of t.scratch space (see collectives.transport)"
        )
