"""Running a power-of-two algorithm on any rank count: fold the extra ranks in, then unfold.

MPICH's scheme. With pof2 the largest power of two <= p and rem = p - pof2, the first 2*rem
ranks pair up (0, 1), (2, 3), ...: each even rank sends its whole buffer to its odd partner,
which reduces it into its own and takes part in the power-of-two algorithm for both, while the
even rank sits out. The remaining ranks join unchanged. Afterwards every odd partner sends the
result back to its even rank. This costs two extra messages of n bytes on the critical path
(2 alpha + 2 n beta + n gamma) but keeps the core algorithm simple.

Ranks in the core are renumbered 0 .. pof2-1 (``Pow2Group.vrank``); ``Pow2Group.real`` maps a
virtual rank back to a real one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

FOLD_TAG = 1 << 15  # above any step tag the cores use, so fold messages can never be confused
UNFOLD_TAG = FOLD_TAG + 1


def largest_pow2(p: int) -> int:
    """The largest power of two not above p (p >= 1)."""
    return 1 << (p.bit_length() - 1)


class Pow2Group:
    """This rank's place among the power-of-two participants (``vrank`` is -1 if it sits out)."""

    __slots__ = ("rem", "size", "vrank")

    def __init__(self, p: int, rank: int) -> None:
        self.size = largest_pow2(p)
        self.rem = p - self.size
        if rank < 2 * self.rem:
            self.vrank = rank // 2 if rank % 2 else -1
        else:
            self.vrank = rank - self.rem

    def real(self, vrank: int) -> int:
        """The real rank playing virtual rank ``vrank``."""
        return 2 * vrank + 1 if vrank < self.rem else vrank + self.rem


Core = Callable[[Transport, np.ndarray, ReduceOp, Pow2Group, np.ndarray], Iterator[Step]]


def folded(t: Transport, buf: np.ndarray, op: ReduceOp, core: Core, core_scratch: int) -> Iterator[Step]:
    """Run ``core`` on the power-of-two group, folding the extra ranks in before and out after.

    One scratch allocation serves both the fold (n elements, on the odd partners) and the core
    (``core_scratch`` elements), since they are never in use at the same time.
    """
    group = Pow2Group(t.size, t.rank)
    r = t.rank
    scratch = t.scratch(max(core_scratch, buf.size if group.rem else 0), buf.dtype)
    if r < 2 * group.rem:
        if group.vrank < 0:  # even rank: hand the data over, get the result back
            yield t.send(buf, r + 1, FOLD_TAG)
            yield t.recv(buf, r + 1, UNFOLD_TAG)
            return
        yield t.recv(scratch[: buf.size], r - 1, FOLD_TAG)
        t.reduce(op, buf, scratch[: buf.size])
    yield from core(t, buf, op, group, scratch)
    if r < 2 * group.rem:
        yield t.send(buf, r - 1, UNFOLD_TAG)


def fold_messages(p: int) -> int:
    """Extra messages the busiest rank (an odd partner) sends because of folding: 1 or 0."""
    return 1 if p != largest_pow2(p) else 0
