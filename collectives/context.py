"""Per-communicator state: a private duplicate of the user's communicator and its transports.

Our messages travel on a duplicate (``comm.Dup()``, made once, on first use) so they can never
match the user's own point-to-point messages on the same communicator, whatever tags either
side uses: MPI libraries do the same for their collectives. The duplicate is cached on the
user's communicator as an MPI attribute, so it lives exactly as long as that communicator.
The mismatch check of blocking calls has a duplicate of its own (:class:`collectives.agreement.Mailbox`),
whose persistent receives are freed at exit, before MPI is finalized.
"""

from __future__ import annotations

import atexit
from typing import Any

from mpi4py import MPI

from collectives.agreement import Mailbox
from collectives.emulation import EmulatedLinkTransport
from collectives.link import Link, parse_link
from collectives.mpi_transport import TAG_SPAN, MPITransport
from collectives.plans import PlanCache
from collectives.watchdog import Census

_KEYVAL = MPI.Comm.Create_keyval()
# TAG_UB is at least 32767 by the standard; MPICH gives 2^29 - 1.
_MAX_SLOTS = max(1, (MPI.COMM_WORLD.Get_attr(MPI.TAG_UB) + 1) // TAG_SPAN)


class CommContext:
    """What the collectives keep for one communicator."""

    def __init__(self, comm: MPI.Intracomm) -> None:
        if comm.Is_inter():
            raise NotImplementedError("collectives: intercommunicators are not supported (use an intracommunicator)")
        self.user = comm
        self.comm = comm.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.transport = MPITransport(self.comm)  # blocking collectives, run one at a time
        self.sequence = 0  # non-blocking collectives started, identical on all ranks
        self.calls = 0  # collectives called, blocking or not: the sequence number in timeout errors
        self.census = Census(comm.Dup())  # who waits where, asked when a collective times out
        self.mailbox = Mailbox(comm.Dup())  # the blocking calls' mismatch check (collectives.agreement)
        _mailboxes.append(self.mailbox)
        self.plans = PlanCache()  # validated allreduce calls (collectives.plans)
        self._emulated: dict[Link, EmulatedLinkTransport] = {}  # link -> the emulated transport of allreduce(link=...)

    def emulated(self, link: Link | str) -> EmulatedLinkTransport:
        """The blocking transport stretched to ``link``'s time, made once per link and kept."""
        link = parse_link(link)
        try:
            return self._emulated[link]
        except KeyError:
            made = self._emulated[link] = EmulatedLinkTransport(self.transport, link)
            return made

    def next_tag_offset(self) -> int:
        """Tag space for the next non-blocking collective (slots cycle; 8191 can be in flight with MPICH)."""
        slot = 1 + self.sequence % (_MAX_SLOTS - 1) if _MAX_SLOTS > 1 else 0
        self.sequence += 1
        return slot * TAG_SPAN


_last: tuple[Any, CommContext | None] = (None, None)
_mailboxes: list[Mailbox] = []


@atexit.register  # registered after mpi4py's own exit handler, so it runs before MPI is finalized
def _close_mailboxes() -> None:
    if not MPI.Is_finalized():
        for mailbox in _mailboxes:
            mailbox.close()


def world() -> MPI.Intracomm:
    return MPI.COMM_WORLD


def context(comm: Any = None) -> CommContext:
    """The context of ``comm`` (``MPI.COMM_WORLD`` if None), created collectively on first use."""
    global _last
    if comm is None:
        comm = MPI.COMM_WORLD
    if comm is _last[0]:
        return _last[1]
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"collectives: comm must be an mpi4py intracommunicator, got {type(comm).__name__}")
    ctx = comm.Get_attr(_KEYVAL)
    if ctx is None:
        ctx = CommContext(comm)
        comm.Set_attr(_KEYVAL, ctx)
    _last = (comm, ctx)
    return ctx
