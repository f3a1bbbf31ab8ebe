"""A drop-in mpi4py communicator whose collectives run the hand-written algorithms.

``collectives.wrap(comm)`` returns an :class:`mpi4py.MPI.Intracomm` (a second handle on the same
communicator), so it works wherever mpi4py code expects one. Its ``Allreduce``, ``Reduce``,
``Bcast``, ``Allgather`` and ``Reduce_scatter_block`` accept mpi4py's arguments: buffer
specifications (any buffer-protocol object, ``[buf, datatype]``, ``[buf, count, datatype]``,
``[buf, (count, displ), datatype]``), ``MPI.IN_PLACE`` (a send buffer that is the receive
buffer counts as in place), the ops ``MPI.SUM``, ``MPI.PROD``, ``MPI.MAX``, ``MPI.MIN``, and the
basic datatypes, and route through :mod:`collectives.api`. Everything else is mpi4py's own.
Cases outside that (derived datatypes, other or user-defined ops, ``MPI.BOTTOM``...) raise
``NotImplementedError`` naming the case, and like every argument error on one rank, make the
other ranks raise too (a ``CollectiveMismatchError`` naming this rank) instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from mpi4py import MPI
from mpi4py.util import dtlib

from collectives import api
from collectives.prepare import fail

T = TypeVar("T")

_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "max": MPI.MAX, "min": MPI.MIN}
_OTHER_OPS = ["LAND", "LOR", "LXOR", "BAND", "BOR", "BXOR", "MAXLOC", "MINLOC", "REPLACE", "NO_OP"]


def _op_name(method: str, op: Any) -> str:
    for name, mpi_op in _OPS.items():
        if op == mpi_op:
            return name
    what = next((f"MPI.{n}" for n in _OTHER_OPS if op == getattr(MPI, n)), None)
    what = what or ("a user-defined MPI.Op" if isinstance(op, MPI.Op) else repr(op))
    raise NotImplementedError(f"{method}: op {what} is not supported by collectives.wrap (MPI.SUM, PROD, MAX, MIN are)")


def _dtype(method: str, datatype: Any) -> np.dtype:
    if isinstance(datatype, str):
        return np.dtype(datatype)
    if not isinstance(datatype, MPI.Datatype):
        raise TypeError(f"{method}: expected an MPI.Datatype, got {type(datatype).__name__}")
    if not datatype.is_predefined:
        raise NotImplementedError(f"{method}: derived datatype {datatype.Get_name() or datatype!r} is not supported")
    try:
        dt = dtlib.to_numpy_dtype(datatype)
    except (ValueError, KeyError, TypeError):
        raise NotImplementedError(f"{method}: datatype {datatype.Get_name()} is not supported") from None
    if dt.kind not in "biufc" or dt.fields is not None:
        raise NotImplementedError(f"{method}: datatype {datatype.Get_name()} ({dt}) is not a numeric type")
    return dt


def as_array(method: str, spec: Any) -> np.ndarray:
    """A flat numpy view of an mpi4py buffer specification (shares memory with it)."""
    if spec is MPI.BOTTOM:
        raise NotImplementedError(f"{method}: MPI.BOTTOM buffers are not supported")
    count = displ = datatype = None
    if isinstance(spec, (list, tuple)):
        if len(spec) == 2:
            data, second = spec
            if isinstance(second, (tuple, list)):
                count, displ = second
            else:
                datatype = second
        elif len(spec) == 3:
            data, second, datatype = spec
            if isinstance(second, (tuple, list)):
                count, displ = second
            else:
                count = second
        else:
            raise TypeError(f"{method}: a buffer specification has 2 or 3 items, got {len(spec)}")
    else:
        data = spec
    if data is MPI.BOTTOM:
        raise NotImplementedError(f"{method}: MPI.BOTTOM buffers are not supported")
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            arr = np.asarray(memoryview(data))
        except TypeError:
            raise TypeError(f"{method}: {type(data).__name__} does not support the buffer protocol") from None
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        raise ValueError(f"{method}: the buffer must be contiguous")
    dt = _dtype(method, datatype) if datatype is not None else arr.dtype
    raw = arr.reshape(-1) if arr.flags.c_contiguous else arr.T.reshape(-1)
    raw = raw.view(np.uint8)
    if raw.size % dt.itemsize:
        raise ValueError(f"{method}: buffer of {raw.size} bytes is not a whole number of {dt} elements")
    flat = raw.view(dt)
    start = displ or 0
    stop = start + count if count is not None else flat.size
    if start < 0 or stop > flat.size:
        raise ValueError(f"{method}: count {count} and displacement {start} exceed the buffer of {flat.size} elements")
    return flat[start:stop]


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.nbytes == b.nbytes


class WrappedComm(MPI.Intracomm):
    """An intracommunicator handle whose five basic collectives run the hand-written algorithms.

    The wrapper's own checks of mpi4py's arguments (buffer specifications, ops, datatypes,
    matching send and receive buffers) run before the call; a rank whose check fails still takes
    part in the ranks' agreement as an invalid call (:func:`collectives.prepare.fail`), so every
    rank raises, as for any other argument error.
    """

    def __new__(cls, comm: MPI.Intracomm, *args: Any, **kwargs: Any) -> WrappedComm:
        return super().__new__(cls, comm)

    def __init__(
        self, comm: MPI.Intracomm, algorithm: str = "ring", check: bool | None = None, timeout: float | None = None
    ) -> None:
        self.collective_algorithm = algorithm
        self.collective_check = check
        self.collective_timeout = timeout
        self._base = comm

    def _checked(self, collective: str, local: Callable[[], T]) -> T:
        """``local()`` (this rank's own checks); its error is raised on every rank."""
        try:
            return local()
        except (TypeError, ValueError, NotImplementedError) as e:
            fail(collective, api.context(self._base), e, self.collective_check, self.collective_timeout)
            raise  # fail raised already; this keeps type checkers informed

    def _input(self, method: str, sendbuf: Any, recv: np.ndarray) -> bool:
        """Copy the send buffer into ``recv`` unless the call is in place; returns whether it was."""
        if sendbuf is MPI.IN_PLACE:
            return True
        send = as_array(method, sendbuf)
        if _same_memory(send, recv):
            return True
        if send.dtype != recv.dtype or send.size != recv.size:
            raise ValueError(
                f"{method}: send buffer ({send.size} x {send.dtype}) and receive buffer ({recv.size} x {recv.dtype})"
                " must match"
            )
        np.copyto(recv, send)
        return False

    def _options(self) -> dict[str, Any]:
        return {"check": self.collective_check, "timeout": self.collective_timeout}

    def Allreduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> None:
        def local() -> tuple[str, np.ndarray]:
            recv = as_array("Allreduce", recvbuf)
            self._input("Allreduce", sendbuf, recv)
            return _op_name("Allreduce", op), recv

        name, recv = self._checked("allreduce", local)
        api.allreduce(recv, self._base, name, self.collective_algorithm, **self._options())

    def Reduce(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM, root: int = 0) -> None:
        def local() -> tuple[str, np.ndarray]:
            name = _op_name("Reduce", op)
            if self.Get_rank() == root:
                work = as_array("Reduce", recvbuf)
                self._input("Reduce", sendbuf, work)
            else:
                if sendbuf is MPI.IN_PLACE:
                    raise ValueError("Reduce: MPI.IN_PLACE is only valid on the root")
                work = as_array("Reduce", sendbuf)  # left unchanged: inner ranks accumulate in scratch
                if not work.flags.writeable:
                    work = work.copy()
            return name, work

        name, work = self._checked("reduce", local)
        api.reduce(work, root, self._base, name, **self._options())

    def Bcast(self, buf: Any, root: int = 0) -> None:
        data = self._checked("broadcast", lambda: as_array("Bcast", buf))
        api.broadcast(data, root, self._base, **self._options())

    def Allgather(self, sendbuf: Any, recvbuf: Any) -> None:
        def local() -> np.ndarray:
            recv = as_array("Allgather", recvbuf)
            p, r = self.Get_size(), self.Get_rank()
            if recv.size % p:
                raise ValueError(f"Allgather: receive buffer of {recv.size} elements is not {p} equal blocks")
            block = recv.size // p
            self._input("Allgather", sendbuf, recv[r * block : (r + 1) * block])
            return recv

        recv = self._checked("allgather", local)
        api.allgather(recv, self._base, **self._options())

    def Reduce_scatter_block(self, sendbuf: Any, recvbuf: Any, op: MPI.Op = MPI.SUM) -> None:
        def local() -> tuple[str, np.ndarray, np.ndarray, int]:
            name = _op_name("Reduce_scatter_block", op)
            p = self.Get_size()
            recv = as_array("Reduce_scatter_block", recvbuf)
            if sendbuf is MPI.IN_PLACE:
                if recv.size % p:
                    raise ValueError(f"Reduce_scatter_block: in-place buffer of {recv.size} elements is not {p} blocks")
                return name, recv, recv.copy(), recv.size // p
            send = as_array("Reduce_scatter_block", sendbuf)
            block = recv.size
            if send.size != p * block or send.dtype != recv.dtype:
                raise ValueError(
                    f"Reduce_scatter_block: send buffer must hold {p} blocks of {block} x {recv.dtype}, got"
                    f" {send.size} x {send.dtype}"
                )
            return name, recv, send.copy(), block  # the send buffer must not change: the copy is workspace

        name, recv, work, block = self._checked("reduce_scatter", local)
        mine = api.reduce_scatter(work, self._base, name, **self._options())
        np.copyto(recv[:block], mine)


def wrap(
    comm: MPI.Intracomm, algorithm: str = "ring", *, check: bool | None = None, timeout: float | None = None
) -> WrappedComm:
    """``comm`` with its Allreduce, Reduce, Bcast, Allgather and Reduce_scatter_block run by our algorithms."""
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"wrap: expected an mpi4py intracommunicator, got {type(comm).__name__}")
    return WrappedComm(comm, algorithm, check, timeout)
