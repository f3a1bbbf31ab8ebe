"""Run under mpiexec: communicators made from a wrapped one stay wrapped, and Iallreduce is routed.

``Dup``, ``Dup_with_info``, ``Clone``, ``Idup``, ``Split``, ``Split_type``, ``Create`` and
``Create_group`` of ``collectives.wrap(...)`` must return wrapped communicators with the same
algorithm, check and timeout, whose ``Allreduce`` runs the hand-written algorithm (seen by a spy
on ``collectives.api.allreduce``) and gives the sum computed here with numpy from every rank's
input (small integers: exact in every order). Prints one line per failure and a summary.
"""

import numpy as np
from mpi4py import MPI

import collectives
from collectives import api, nonblocking
from collectives.context import context
from collectives.mpi_wrap import WrappedComm

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
ALGORITHM, CHECK, TIMEOUT = "recursive_doubling", True, 30.0  # not the defaults: they must be carried over
failures: list[str] = []


def expect(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)
        print(f"rank {rank}: FAIL {what}", flush=True)


# Spies: which algorithm the wrapper's calls reached the library with.
seen: list[str] = []
real_allreduce, real_iallreduce = api.allreduce, nonblocking.iallreduce


def spy_allreduce(buf, comm=None, op="sum", algorithm="ring", **kw):
    seen.append(algorithm)
    return real_allreduce(buf, comm, op, algorithm, **kw)


def spy_iallreduce(buf, comm=None, op="sum", algorithm="ring", **kw):
    seen.append("i" + algorithm)
    return real_iallreduce(buf, comm, op, algorithm, **kw)


api.allreduce, nonblocking.iallreduce = spy_allreduce, spy_iallreduce


def data(r: int, dtype=np.float64) -> np.ndarray:
    """Rank ``r``'s input: small integers, different on each rank."""
    return (np.arange(7) * (r + 2) - 3 * r).astype(dtype)


def oracle(members: list[int], dtype=np.float64) -> np.ndarray:
    return np.sum([data(r, dtype) for r in members], axis=0).astype(dtype)


def check_wrapped(name: str, comm, members: list[int]) -> None:
    """``comm`` is wrapped with the settings, spans ``members`` (world ranks), and reduces over them."""
    if not isinstance(comm, WrappedComm):
        expect(False, f"{name}: returned {type(comm).__name__}, not a WrappedComm")
        return
    settings = (comm.collective_algorithm, comm.collective_check, comm.collective_timeout)
    expect(settings == (ALGORITHM, CHECK, TIMEOUT), f"{name}: settings {settings}")
    expect(comm.Get_size() == len(members), f"{name}: size {comm.Get_size()}, expected {len(members)}")
    expect(comm.Get_rank() == members.index(rank), f"{name}: rank {comm.Get_rank()}")
    # handed to the library itself first (as DDP does): its context must be made from a plain handle,
    # so the library's private duplicate stays plain and its agreement is not routed back here
    direct = data(rank)
    collectives.allreduce(direct, comm, "sum", "naive", check=True)
    expect(np.array_equal(direct, oracle(members)), f"{name}: collectives.allreduce on it gave {direct}")
    expect(type(context(comm).comm) is MPI.Intracomm, f"{name}: library context holds {type(context(comm).comm)}")
    for dtype in (np.float64, np.int32):
        seen.clear()
        out = np.empty(7, dtype)
        comm.Allreduce(data(rank, dtype), out, MPI.SUM)
        expect(np.array_equal(out, oracle(members, dtype)), f"{name}: Allreduce {dtype.__name__} gave {out}")
        expect(seen == [ALGORITHM], f"{name}: Allreduce reached the library as {seen}, expected [{ALGORITHM!r}]")


everyone = list(range(size))
w = collectives.wrap(world, ALGORITHM, check=CHECK, timeout=TIMEOUT)
check_wrapped("wrap", w, everyone)

made = {"Dup": w.Dup(), "Dup_with_info": w.Dup_with_info(MPI.INFO_NULL), "Clone": w.Clone()}
made["Dup of Dup"] = made["Dup"].Dup()
idup, request = w.Idup()
request.Wait()
made["Idup"] = idup
made["Split(0)"] = w.Split(0, rank)
made["Split_type shared"] = w.Split_type(MPI.COMM_TYPE_SHARED, rank)  # one node: every rank
made["Create"] = w.Create(w.Get_group())
made["Create_group"] = w.Create_group(w.Get_group())
for name, comm in made.items():
    check_wrapped(name, comm, everyone)
    expect(comm.Compare(world) == MPI.CONGRUENT, f"{name}: not congruent with the world")

# Split into two groups (even and odd ranks): each reduces only its members
half = [r for r in everyone if r % 2 == rank % 2]
check_wrapped("Split(rank % 2)", w.Split(rank % 2, rank), half)
# reversed order by key: the new ranks follow the key
rev = w.Split(0, size - rank)
check_wrapped("Split(0, reversed key)", rev, everyone[::-1])

# a rank left out gets MPI.COMM_NULL; the others a wrapped communicator of the rest
if size > 1:
    rest = w.Split(MPI.UNDEFINED if rank == 0 else 1, rank)
    if rank == 0:
        expect(rest == MPI.COMM_NULL, f"Split(UNDEFINED): rank 0 got {rest!r}")
    else:
        check_wrapped("Split(UNDEFINED on rank 0)", rest, everyone[1:])
    sub = w.Create_group(w.Get_group().Incl(everyone[1:])) if rank != 0 else None
    if rank != 0:
        check_wrapped("Create_group(ranks 1..)", sub, everyone[1:])

# Iallreduce: plain sum / max on numpy buffers routed by hand; other ops and forms are MPI's own
for op, name, reference in [(MPI.SUM, "sum", oracle(everyone)), (MPI.MAX, "max", None)]:
    if reference is None:
        reference = np.max([data(r) for r in everyone], axis=0)
    seen.clear()
    out = np.empty(7)
    req = w.Iallreduce(data(rank).reshape(7, 1), out, op)  # a 2-D send buffer of the same size
    req.Wait()
    expect(np.array_equal(out, reference), f"Iallreduce {name} gave {out}")
    expect(seen == ["i" + ALGORITHM], f"Iallreduce {name} reached the library as {seen}")
    expect(not isinstance(req, MPI.Request), f"Iallreduce {name}: got an MPI.Request, not the library's")
inplace = data(rank)
seen.clear()
w.Iallreduce(MPI.IN_PLACE, inplace, MPI.SUM).Wait()
expect(np.array_equal(inplace, oracle(everyone)), f"Iallreduce IN_PLACE gave {inplace}")
expect(seen == ["i" + ALGORITHM], f"Iallreduce IN_PLACE reached the library as {seen}")
# bitwise and: not routed, MPI's request and MPI's result
bits = np.array([0b1111 ^ (1 << (r % 4)) for r in everyone], dtype=np.int32)
band = np.zeros(1, np.int32)
seen.clear()
req = w.Iallreduce(bits[rank : rank + 1], band, MPI.BAND)
expect(isinstance(req, MPI.Request), f"Iallreduce BAND: {type(req).__name__}, expected MPI's request")
req.Wait()
expected_band = np.bitwise_and.reduce(bits)
expect(band[0] == expected_band, f"Iallreduce BAND gave {band[0]}, expected {expected_band}")
expect(seen == [], f"Iallreduce BAND reached the library: {seen}")
# a [buf, count, datatype] receive buffer: not routed either, MPI's own call
req = w.Iallreduce(data(rank), [np.zeros(14), 7, MPI.DOUBLE], MPI.SUM)
expect(isinstance(req, MPI.Request), "Iallreduce with a buffer spec: expected MPI's request")
req.Wait()

failed = world.allreduce(len(failures))
if rank == 0:
    print(f"{size} ranks: {failed} failures", flush=True)
raise SystemExit(1 if failed else 0)
