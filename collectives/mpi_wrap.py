"""A drop-in mpi4py communicator whose collectives run the hand-written algorithms.

``collectives.wrap(comm)`` returns an :class:`mpi4py.MPI.Intracomm` (a second handle on the same
communicator), so it works wherever mpi4py code expects one. Its ``Allreduce``, ``Iallreduce``,
``Reduce``, ``Bcast``, ``Allgather`` and ``Reduce_scatter_block`` (:data:`BY_HAND`) run the
library's algorithms when they can: host buffers in any form mpi4py takes (read by
:mod:`collectives.mpi_specs`: the buffer protocol, DLPack on the CPU, buffer specifications,
``MPI.IN_PLACE``), a predefined numeric or bool datatype (long double included), and the ops
SUM, PROD, MAX, MIN, LAND, LOR, LXOR, BAND, BOR and BXOR on the dtypes the library defines them
for. Every other call goes to MPI's own method unchanged, so the wrapper never refuses what MPI
takes nor answers differently: MAXLOC and MINLOC, user-defined ops, derived datatypes,
``MPI.BOTTOM``, device memory (``__cuda_array_interface__``, DLPack off the CPU), and an algorithm
whose constraints exclude the call. ``WrappedComm.explain(method, *args)`` says which path a call
takes and why. Every other method (Gather, Scan, Barrier, the lowercase pickle-based ones...) is
mpi4py's own.

The path depends on the op, the datatype, the count, the root and the number of ranks, which a
valid MPI call has the same on every rank, and on whether a buffer is host memory: a call with
device memory on some ranks and host memory on others is not supported (it waits, then the
library's watchdog raises on the ranks that took the hand-written path). A call the wrapper would
run by hand but finds invalid on one rank (send and receive buffers that do not match, a
read-only receive buffer) raises on every rank instead of leaving the others waiting.

``Iallreduce`` by hand returns the library's request (``Test()``/``Wait()``, lower case too), not
an ``MPI.Request``: ``MPI.Request.Waitall`` and friends do not take it. Communicators made from a
wrapped one (``Dup``, ``Clone``, ``Idup``, ``Split``, ``Split_type``, ``Create``,
``Create_group``) are wrapped with the same settings, so code that duplicates the communicator
it is given (DDP) keeps the wrapping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from collectives import api, nonblocking, select
from collectives.algorithms import ALGORITHMS, resolve
from collectives.context import _KEYVAL as CONTEXT_KEYVAL
from collectives.mpi_specs import Passthrough, in_place, read
from collectives.ops import get_op
from collectives.prepare import fail

# The MPI ops run by hand, by the library's name; every other op (MAXLOC, MINLOC, REPLACE, NO_OP,
# user-defined) is MPI's. A list, not a dict: MPI.Op is not hashable.
HAND_OPS = [
    (MPI.SUM, "sum"),
    (MPI.PROD, "prod"),
    (MPI.MAX, "max"),
    (MPI.MIN, "min"),
    (MPI.LAND, "land"),
    (MPI.LOR, "lor"),
    (MPI.LXOR, "lxor"),
    (MPI.BAND, "band"),
    (MPI.BOR, "bor"),
    (MPI.BXOR, "bxor"),
]
_OTHER_OPS = ["MAXLOC", "MINLOC", "REPLACE", "NO_OP"]
# The collective each method runs by hand, and the building block's algorithm (Allreduce's is the wrapper's own).
BY_HAND = {
    "Allreduce": ("allreduce", None),
    "Iallreduce": ("allreduce", None),
    "Reduce": ("reduce", "binomial"),
    "Bcast": ("broadcast", "binomial"),
    "Allgather": ("allgather", "ring"),
    "Reduce_scatter_block": ("reduce_scatter", "ring"),
}


def _op_name(op: Any) -> str:
    """The library's name for an MPI op it reduces by hand, or Passthrough naming the op."""
    for mpi_op, name in HAND_OPS:
        if op == mpi_op:
            return name
    if not isinstance(op, MPI.Op):
        raise Passthrough(f"op {op!r} is not an MPI.Op")
    what = next((f"MPI.{n}" for n in _OTHER_OPS if op == getattr(MPI, n)), "a user-defined MPI.Op")
    raise Passthrough(f"op {what} is not implemented by hand")


def _reducible(name: str, flat: np.ndarray) -> None:
    """Passthrough unless the library's op ``name`` is defined on the buffer's dtype."""
    if why := get_op(name).check_dtype(flat.dtype):
        raise Passthrough(why)


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.nbytes == b.nbytes


def _send(sendbuf: Any, recv: np.ndarray, method: str) -> np.ndarray | None:
    """The send buffer's elements, or None when the call is in place (IN_PLACE, or the receive buffer itself)."""
    if in_place(sendbuf):
        return None
    send = read(sendbuf, writable=False)
    if _same_memory(send, recv):
        return None
    if send.dtype != recv.dtype or send.size != recv.size:
        raise ValueError(
            f"{method}: send buffer ({send.size} x {send.dtype}) and receive buffer ({recv.size} x {recv.dtype})"
            " must match"
        )
    return send


@dataclass(frozen=True)
class Route:
    """How one call runs: ``run()`` does it by hand (or raises its error on every rank); None: MPI's own method."""

    why: str
    run: Callable[[], Any] | None = None


class WrappedComm(MPI.Intracomm):
    """An intracommunicator handle whose basic collectives (:data:`BY_HAND`) run the hand-written algorithms.

    Each such call is first read (``_plan_<method>``, shared with :meth:`explain`) into a
    :class:`Route`: by hand, MPI's own method, or an invalid call. An invalid call still takes
    part in the ranks' agreement (:func:`collectives.prepare.fail`), so every rank raises, as for
    any other argument error.
    """

    def __new__(cls, comm: MPI.Intracomm | None = None, *args: Any, **kwargs: Any) -> WrappedComm:
        # mpi4py makes the results of Dup, Clone and Idup as ``type(self).__new__(type(self))``: no arguments
        return super().__new__(cls, comm)

    def __init__(
        self,
        comm: MPI.Intracomm | None = None,
        algorithm: str = "ring",
        check: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        self._configure(algorithm, check, timeout)

    def _configure(self, algorithm: str, check: bool | None, timeout: float | None) -> None:
        self.collective_algorithm = algorithm
        self.collective_check = check
        self.collective_timeout = timeout
        self._plain: MPI.Intracomm | None = None

    @property
    def _base(self) -> MPI.Intracomm:
        """A plain handle on this communicator, for the library's own calls (which must not come back here).

        Made on first use, not at construction: the handle of an ``Idup`` result is only valid once
        its request has completed.
        """
        if self._plain is None:
            self._plain = MPI.Intracomm(self)
        return self._plain

    def Get_attr(self, keyval: int) -> Any:
        """MPI's attribute; the library's context of this communicator is made from the plain handle.

        ``collectives.allreduce(buf, wrapped)`` (DDP does this with its duplicate) looks the context
        up here. Made from this handle, its private duplicate would be a wrapped communicator whose
        ``Iallreduce`` (the ranks' agreement) would come back through the wrapper; made from the
        plain handle it is plain. Collective, as making any context is, at the same point.
        """
        value = super().Get_attr(keyval)
        if value is None and keyval == CONTEXT_KEYVAL:
            api.context(self._base)
            value = super().Get_attr(keyval)
        return value

    # -- new communicators: wrapped, with the same settings ------------------------------------
    def _adopt(self, new: MPI.Comm) -> Any:
        """``new`` (a communicator this one made) wrapped with this one's settings; MPI.COMM_NULL as it is."""
        if new == MPI.COMM_NULL or not isinstance(new, MPI.Intracomm):
            return new
        settings = (self.collective_algorithm, self.collective_check, self.collective_timeout)
        if isinstance(new, WrappedComm):
            new._configure(*settings)  # made by mpi4py without __init__
            return new
        return WrappedComm(new, *settings)  # a second handle; the first one is dropped, not freed

    def Dup(self, info: MPI.Info | None = None) -> WrappedComm:
        return self._adopt(super().Dup(info))

    def Dup_with_info(self, info: MPI.Info) -> WrappedComm:
        return self._adopt(super().Dup_with_info(info))

    def Clone(self) -> WrappedComm:
        return self._adopt(super().Clone())

    def Idup(self, info: MPI.Info | None = None) -> tuple[WrappedComm, MPI.Request]:
        new, request = super().Idup(info)
        return self._adopt(new), request

    def Idup_with_info(self, info: MPI.Info) -> tuple[WrappedComm, MPI.Request]:
        new, request = super().Idup_with_info(info)
        return self._adopt(new), request

    def Split(self, color: int = 0, key: int = 0) -> Any:
        return self._adopt(super().Split(color, key))

    def Split_type(self, split_type: int, key: int = 0, info: MPI.Info = MPI.INFO_NULL) -> Any:
        return self._adopt(super().Split_type(split_type, key, info))

    def Create(self, group: MPI.Group) -> Any:
        return self._adopt(super().Create(group))

    def Create_group(self, group: MPI.Group, tag: int = 0) -> Any:
        return self._adopt(super().Create_group(group, tag))

    # -- collectives ---------------------------------------------------------------------------
    def _route(self, method: str, *args: Any, **kwargs: Any) -> Route:
        """Which path ``method(*args, **kwargs)`` takes; reading its arguments changes nothing."""
        try:
            return getattr(self, f"_plan_{method}")(*args, **kwargs)
        except Passthrough as e:
            return Route(f"MPI's own {method}: {e}")
        except (TypeError, ValueError) as e:
            error = e if str(e).startswith(method) else type(e)(f"{method}: {e}")
        collective = BY_HAND[method][0]

        def everywhere() -> None:
            fail(collective, api.context(self._base), error, self.collective_check, self.collective_timeout)

        return Route(f"invalid call: raises {type(error).__name__} on every rank: {error}", everywhere)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        route = self._route(method, *args, **kwargs)
        if route.run is None:
            return getattr(super(), method)(*args, **kwargs)
        return route.run()

    def explain(self, method: str, *args: Any, **kwargs: Any) -> str:
        """Which path ``self.<method>(*args, **kwargs)`` would take, and why, without running it.

        ``w.explain("Allreduce", send, recv, MPI.MAXLOC)`` -> "Allreduce: MPI's own Allreduce: op
        MPI.MAXLOC is not implemented by hand". Local: it reads the arguments and communicates nothing.
        """
        if method not in BY_HAND:
            return f"{method}: MPI's own (the wrapper runs {', '.join(BY_HAND)} by hand)"
        return f"{method}: {self._route(method, *args, **kwargs).why}"

    def _options(self) -> dict[str, Any]:
        return {"check": self.collective_check, "timeout": self.collective_timeout}

    def _root(self, root: Any) -> int:
        if not isinstance(root, (int, np.integer)) or not 0 <= root < self.Get_size():
            raise Passthrough(f"root {root!r} is not a rank of this communicator")
        return int(root)

    def _allreduce_algorithm(self, flat: np.ndarray) -> str:
        """The algorithm that runs (``auto`` resolved), or Passthrough when its constraints exclude the call."""
        name = resolve(self.collective_algorithm, collective="allreduce")  # an unknown name: ValueError
        p = self.Get_size()
        if name == "auto":
            name = select.choose(p, flat.nbytes, flat.dtype.itemsize)
        if why := ALGORITHMS[name].constraints.violation(p, flat.size):
            raise Passthrough(f"algorithm {name!r} {why}")
        return name

    def _allreduce_args(self, method: str, sendbuf: Any, recvbuf: Any, op: Any) -> tuple[str, np.ndarray, Any, str]:
        name = _op_name(op)
        recv = read(recvbuf, writable=True)
        send = _send(sendbuf, recv, method)
        _reducible(name, recv)
        algorithm = self._allreduce_algorithm(recv)
        chosen = f"{algorithm!r} (auto)" if self.collective_algorithm == "auto" else repr(algorithm)
        place = "in place" if send is None else "out of place"
        return name, recv, send, f"by hand: algorithm {chosen}, {recv.size} x {recv.dtype}, op {name}, {place}"

    def _plan_Allreduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> Route:
        name, recv, send, why = self._allreduce_args("Allreduce", sendbuf, recvbuf, op)

        def run() -> None:
            if send is not None:
                np.copyto(recv, send)
            api.allreduce(recv, self._base, name, self.collective_algorithm, **self._options())

        return Route(why, run)

    def _plan_Iallreduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> Route:
        name, recv, send, why = self._allreduce_args("Iallreduce", sendbuf, recvbuf, op)

        def run() -> Any:
            if send is not None:
                np.copyto(recv, send)  # read at the start (MPI may read it until completion)
            return nonblocking.iallreduce(recv, self._base, name, self.collective_algorithm, **self._options())

        return Route(why + " (the library's request)", run)

    def _plan_Reduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM, root: int = 0) -> Route:
        name, root = _op_name(op), self._root(root)
        if self.Get_rank() == root:
            work = read(recvbuf, writable=True)
            send = _send(sendbuf, work, "Reduce")
        elif in_place(sendbuf):
            raise ValueError("Reduce: MPI.IN_PLACE is only valid on the root")
        else:
            work, send = read(sendbuf, writable=False), None  # left unchanged: inner ranks accumulate in scratch
        _reducible(name, work)

        def run() -> None:
            buf = work if work.flags.writeable else work.copy()
            if send is not None:
                np.copyto(buf, send)
            api.reduce(buf, root, self._base, name, BY_HAND["Reduce"][1], **self._options())

        return Route(f"by hand: binomial tree to root {root}, {work.size} x {work.dtype}, op {name}", run)

    def _plan_Bcast(self, buf: Any, root: int = 0) -> Route:
        root = self._root(root)
        data = read(buf, writable=self.Get_rank() != root)

        def run() -> None:
            work = data if data.flags.writeable else data.copy()  # the root's may be read-only: it is only sent
            api.broadcast(work, root, self._base, BY_HAND["Bcast"][1], **self._options())

        return Route(f"by hand: binomial tree from root {root}, {data.size} x {data.dtype}", run)

    def _plan_Allgather(self, sendbuf: Any, recvbuf: Any) -> Route:
        p, r = self.Get_size(), self.Get_rank()
        recv = read(recvbuf, writable=True, blocks=p)
        block = recv.size // p
        send = _send(sendbuf, recv[r * block : (r + 1) * block], "Allgather")

        def run() -> None:
            if send is not None:
                np.copyto(recv[r * block : (r + 1) * block], send)
            api.allgather(recv, self._base, BY_HAND["Allgather"][1], **self._options())

        return Route(f"by hand: ring, {p} blocks of {block} x {recv.dtype}", run)

    def _plan_Reduce_scatter_block(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> Route:
        name, p = _op_name(op), self.Get_size()
        if in_place(sendbuf):
            recv = read(recvbuf, writable=True, blocks=p)
            data, block = recv, recv.size // p
        else:
            recv = read(recvbuf, writable=True)
            data, block = read(sendbuf, writable=False, blocks=p), recv.size
            if data.size != p * block or data.dtype != recv.dtype:
                raise ValueError(
                    f"Reduce_scatter_block: send buffer must hold {p} blocks of {block} x {recv.dtype}, got"
                    f" {data.size} x {data.dtype}"
                )
        _reducible(name, recv)

        def run() -> None:
            work = data.copy()  # the send buffer must not change, nor the rest of an in-place one
            mine = api.reduce_scatter(work, self._base, name, BY_HAND["Reduce_scatter_block"][1], **self._options())
            np.copyto(recv[:block], mine)

        return Route(f"by hand: ring, {p} blocks of {block} x {recv.dtype}, op {name}", run)

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> None:
        self._call("Allreduce", sendbuf, recvbuf, op)

    def Iallreduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> Any:
        """MPI's request, or the library's one (``Test``/``Wait``) when the call runs by hand."""
        return self._call("Iallreduce", sendbuf, recvbuf, op)

    def Reduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM, root: int = 0) -> None:
        self._call("Reduce", sendbuf, recvbuf, op, root)

    def Bcast(self, buf: Any, root: int = 0) -> None:
        self._call("Bcast", buf, root)

    def Allgather(self, sendbuf: Any, recvbuf: Any) -> None:
        self._call("Allgather", sendbuf, recvbuf)

    def Reduce_scatter_block(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> None:
        self._call("Reduce_scatter_block", sendbuf, recvbuf, op)


def wrap(
    comm: MPI.Intracomm, algorithm: str = "ring", *, check: bool | None = None, timeout: float | None = None
) -> WrappedComm:
    """``comm`` whose Allreduce, Iallreduce, Reduce, Bcast, Allgather and Reduce_scatter_block run our algorithms."""
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"wrap: expected an mpi4py intracommunicator, got {type(comm).__name__}")
    return WrappedComm(comm, algorithm, check, timeout)
