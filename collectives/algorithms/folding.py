"""Running a power-of-two algorithm on any rank count: fold the extra ranks in, then unfold.

MPICH's scheme. With pof2 the largest power of two <= p and rem = p - pof2, the first 2*rem
ranks pair up (0, 1), (2, 3), ...: each even rank sends its whole buffer to its odd partner,
which reduces it into its own and takes part in the power-of-two algorithm for both, while the
even rank sits out. The remaining ranks join unchanged. Afterwards every odd partner sends the
result back to its even rank. This costs two extra messages of n bytes on the critical path
(2 alpha + 2 n beta + n gamma) but keeps the core algorithm simple.

Ranks in the core are renumbered 0 .. pof2-1 (``Pow2Group.vrank``); ``Pow2Group.real`` maps a
virtual rank back to a real one. An algorithm runs ``fold_in`` before its core and ``fold_out``
after it on the ranks below 2*rem (one scratch allocation serves the fold and the core, which
are never in use at the same time); on a power of two neither runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

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


@lru_cache(maxsize=1024)
def pow2_group(p: int, rank: int) -> Pow2Group:
    """``Pow2Group(p, rank)``, made once (it is read-only)."""
    return Pow2Group(p, rank)


def fold_in(t: Transport, buf: np.ndarray, op: ReduceOp, group: Pow2Group, scratch: np.ndarray) -> Iterator[Step]:
    """Before the core (ranks below 2*rem only): an even rank hands its buffer to its odd partner,
    which reduces it into its own (``scratch`` holds at least ``buf.size`` elements)."""
    r = t.rank
    if group.vrank < 0:
        yield t.send(buf, r + 1, FOLD_TAG)
        return
    incoming = scratch[: buf.size]
    yield t.recv(incoming, r - 1, FOLD_TAG)
    t.reduce(op, buf, incoming)


def fold_out(t: Transport, buf: np.ndarray, group: Pow2Group) -> Iterator[Step]:
    """After the core (ranks below 2*rem only): the odd partner sends the result back to the even rank."""
    r = t.rank
    if group.vrank < 0:
        yield t.recv(buf, r + 1, UNFOLD_TAG)
    else:
        yield t.send(buf, r - 1, UNFOLD_TAG)


def fold_messages(p: int) -> int:
    """Extra messages the busiest rank (an odd partner) sends because of folding: 1 or 0."""
    return 1 if p != largest_pow2(p) else 0
