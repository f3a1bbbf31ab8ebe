"""Symbolic data: every element carries the set of ranks whose contributions it holds.

As in MSCCLang's checker, a run with symbols proves an allreduce correct for any data: rank r
starts with {r} in every element, a message copies sets, ``t.reduce`` takes the union and
fails if a rank would be counted twice, and at the end every element of every rank must hold
all ranks. Sets are Python ints used as bitmasks (bit r = rank r), and a buffer stores runs of
equal sets rather than one per element, so the cost follows the number of chunks an algorithm
moves, not the number of elements: a million-element buffer is as cheap as a ten-element one.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import count
from typing import Any

import numpy as np

from collectives.ops import ReduceOp
from collectives.sim.errors import HazardError, MessageError, PortabilityError, WrongResultError
from collectives.sim.payload import Payload, check_portable_buffer

Pieces = list[tuple[int, Any]]  # (length, mask or None for never-written data)

_bases = count(1)


class SymStore:
    """One allocation (a rank's buffer or a scratch block) as sorted runs of equal masks."""

    __slots__ = ("base", "label", "masks", "rank", "size", "starts")

    def __init__(self, size: int, mask: int | None, rank: int, label: str) -> None:
        self.size = size
        self.starts: list[int] = [0] if size else []
        self.masks: list[int | None] = [mask] if size else []
        self.rank = rank
        self.label = label
        self.base = next(_bases) << 48  # distinct address space per store, for overlap checks

    def read(self, lo: int, hi: int) -> Pieces:
        if lo >= hi:
            return []
        starts, masks = self.starts, self.masks
        n = len(starts)
        i = bisect_right(starts, lo) - 1
        out: Pieces = []
        pos = lo
        while pos < hi:
            end = starts[i + 1] if i + 1 < n else self.size
            if end > hi:
                end = hi
            out.append((end - pos, masks[i]))
            pos = end
            i += 1
        return out

    def write(self, lo: int, hi: int, pieces: Pieces) -> None:
        if lo >= hi:
            return
        starts, masks = self.starts, self.masks
        n = len(starts)
        i = bisect_right(starts, lo) - 1  # run holding element lo
        j = bisect_right(starts, hi - 1) - 1  # run holding element hi-1
        tail_mask = masks[j]
        new_s: list[int] = []
        new_m: list[Any] = []
        if starts[i] < lo:
            new_s.append(starts[i])
            new_m.append(masks[i])
        pos = lo
        for length, mask in pieces:
            if not new_m or new_m[-1] != mask:
                new_s.append(pos)
                new_m.append(mask)
            pos += length
        next_start = starts[j + 1] if j + 1 < n else self.size
        if hi < next_start and new_m[-1] != tail_mask:
            new_s.append(hi)
            new_m.append(tail_mask)
        starts[i : j + 1] = new_s
        masks[i : j + 1] = new_m
        k = i + len(new_s)
        if k < len(starts) and masks[k] == masks[k - 1]:
            del starts[k], masks[k]
        if i > 0 and masks[i] == masks[i - 1]:
            del starts[i], masks[i]


class SymArray:
    """A 1-D view of a :class:`SymStore` that supports exactly what algorithms may use.

    ``buf[a:b]``, ``size``, ``dtype``, ``nbytes``, ``len``; anything else (arithmetic, numpy
    functions, integer indexing) raises, which is how the symbolic run catches an algorithm that
    touches data behind the transport's back.
    """

    __slots__ = ("dtype", "offset", "size", "store")
    ndim = 1

    def __init__(self, store: SymStore, offset: int, size: int, dtype: np.dtype) -> None:
        self.store = store
        self.offset = offset
        self.size = size
        self.dtype = dtype

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def shape(self) -> tuple[int]:
        return (self.size,)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: Any) -> SymArray:
        if type(key) is not slice:
            raise PortabilityError(
                f"rank {self.store.rank}: indexed a buffer with {key!r}; algorithms may only take contiguous "
                f"slices buf[a:b] (see collectives.transport)"
            )
        start, stop, step = key.indices(self.size)
        if step != 1:
            raise PortabilityError(f"rank {self.store.rank}: strided slice {key!r}; only buf[a:b] is portable")
        if stop < start:
            stop = start
        return SymArray(self.store, self.offset + start, stop - start, self.dtype)

    def __array__(self, *args: Any, **kwargs: Any) -> None:
        raise PortabilityError(
            f"rank {self.store.rank}: a buffer was used as a numpy array; algorithms may touch data only through "
            f"t.reduce, t.copy and messages (see collectives.transport)"
        )

    def _no_arithmetic(self, *args: Any) -> None:
        raise PortabilityError(
            f"rank {self.store.rank}: arithmetic or assignment on a buffer; use t.reduce / t.copy instead "
            f"(see collectives.transport)"
        )

    __setitem__ = __add__ = __iadd__ = __radd__ = __mul__ = __imul__ = __sub__ = __isub__ = _no_arithmetic
    __truediv__ = __itruediv__ = __eq__ = __lt__ = __gt__ = _no_arithmetic
    __hash__ = None  # type: ignore[assignment]

    def pieces(self) -> Pieces:
        return self.store.read(self.offset, self.offset + self.size)

    def where(self) -> str:
        return f"{self.store.label}[{self.offset}:{self.offset + self.size}]"

    def __repr__(self) -> str:
        return f"SymArray(rank {self.store.rank}, {self.where()}, {self.dtype})"


def ranks_in(mask: int) -> list[int]:
    out = []
    r = 0
    while mask:
        if mask & 1:
            out.append(r)
        mask >>= 1
        r += 1
    return out


def format_ranks(ranks: list[int], limit: int = 12) -> str:
    text = ", ".join(map(str, ranks[:limit]))
    return "{" + text + (", ..." if len(ranks) > limit else "") + "}"


class SymbolicPayload(Payload):
    """Buffers of symbols (sets of contributing ranks) with the MSCCLang-style exactly-once check."""

    name = "symbolic"

    def __init__(self, p: int) -> None:
        self.p = p
        self.full = (1 << p) - 1

    def input(self, rank: int, n: int, dtype: Any) -> SymArray:
        return SymArray(SymStore(n, 1 << rank, rank, "buf"), 0, n, np.dtype(dtype))

    def scratch(self, rank: int, n: int, dtype: Any) -> SymArray:
        return SymArray(SymStore(n, None, rank, "scratch"), 0, n, np.dtype(dtype))

    def deliver(self, send_buf: SymArray, recv_buf: SymArray) -> None:
        if send_buf.dtype.itemsize != recv_buf.dtype.itemsize:
            raise MessageError(
                f"a message from rank {send_buf.store.rank} ({send_buf.dtype}) to rank {recv_buf.store.rank} "
                f"({recv_buf.dtype}) changes the element size; the symbolic check needs one dtype"
            )
        lo = recv_buf.offset
        recv_buf.store.write(lo, lo + send_buf.size, send_buf.pieces())

    def reduce(self, rank: int, op: ReduceOp, inout: SymArray, incoming: SymArray) -> None:
        check_portable_buffer(rank, inout, SymArray, "t.reduce")
        check_portable_buffer(rank, incoming, SymArray, "t.reduce")
        if inout.size != incoming.size:
            raise MessageError(
                f"rank {rank}: t.reduce needs buffers of equal size, got {inout.size} and {incoming.size} elements"
            )
        if inout.size == 0:
            return
        pa, pb = inout.pieces(), incoming.pieces()
        out: Pieces = []
        i = j = 0
        la, ma = pa[0]
        lb, mb = pb[0]
        pos = 0
        while True:
            step = la if la < lb else lb
            if ma is None or mb is None:
                which = inout if ma is None else incoming
                raise HazardError(
                    f"rank {rank}: t.reduce reads never-written data in {which.store.label}"
                    f"[{which.offset + pos}:{which.offset + pos + step}] (uninitialised scratch?)"
                )
            if ma & mb:
                raise WrongResultError(
                    f"rank {rank}: t.reduce would count rank(s) {format_ranks(ranks_in(ma & mb))} twice in "
                    f"{inout.store.label}[{inout.offset + pos}:{inout.offset + pos + step}]"
                )
            m = ma | mb
            if out and out[-1][1] == m:
                out[-1] = (out[-1][0] + step, m)
            else:
                out.append((step, m))
            pos += step
            la -= step
            lb -= step
            if la == 0:
                i += 1
                if i == len(pa):
                    break
                la, ma = pa[i]
            if lb == 0:
                j += 1
                lb, mb = pb[j]
        inout.store.write(inout.offset, inout.offset + inout.size, out)

    def copy(self, rank: int, dst: SymArray, src: SymArray) -> None:
        check_portable_buffer(rank, dst, SymArray, "t.copy")
        check_portable_buffer(rank, src, SymArray, "t.copy")
        if dst.size != src.size:
            raise MessageError(f"rank {rank}: t.copy needs buffers of equal size, got {dst.size} and {src.size}")
        dst.store.write(dst.offset, dst.offset + dst.size, src.pieces())

    def region(self, buf: SymArray) -> tuple[int, int]:
        lo = buf.store.base + buf.offset
        return lo, lo + buf.size

    def problems(self, rank: int, buf: SymArray, limit: int = 3) -> list[str]:
        """What is wrong with a rank's final buffer (empty when every element holds every rank once)."""
        out = []
        pos = 0
        for length, mask in buf.pieces():
            if mask != self.full:
                where = f"rank {rank}: elements [{pos}:{pos + length})"
                if mask is None:
                    out.append(f"{where} hold never-written scratch data")
                else:
                    have = ranks_in(mask)
                    missing = ranks_in(self.full & ~mask)
                    out.append(
                        f"{where} hold the contributions of {len(have)} of {self.p} ranks "
                        f"(missing {format_ranks(missing)})"
                    )
                if len(out) >= limit:
                    break
            pos += length
        return out
