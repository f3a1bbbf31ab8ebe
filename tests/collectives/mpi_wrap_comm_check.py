"""Run under mpiexec: communicators made from a wrapped one stay wrapped, and Iallreduce is routed.

``Dup``, ``Dup_with_info``, ``Clone``, ``Idup``, ``Split``, ``Split_type``, ``Create`` and
``Create_group`` of ``collectives.wrap(...)`` must return wrapped communicators with the same
algorithm, check and timeout, whose ``Allreduce`` runs the hand-written algorithm (seen by a spy
on ``collectives.api.allreduce``) and gives the sum computed here with numpy from every rank's
input (small integers: exact in every order). Then every buffer form mpi4py takes, MPI's logical
and bitwise ops and the long double types run by hand, and MAXLOC, a user-defined op, the CUDA
array interface and a derived datatype go to MPI, each against values computed here with Python
numbers; and ``explain`` names each path. Prints one line per failure and a summary.
"""

import array
import functools
import operator

import numpy as np
from mpi4py import MPI

import collectives
from collectives import api, nonblocking
from collectives.context import context
from collectives.mpi_wrap import WrappedComm

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
DOUBLE_INT = np.dtype([("v", "f8"), ("i", "i4")], align=True)  # MPI.DOUBLE_INT's layout: 16 bytes
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
# bitwise and, and a [buf, count, datatype] receive buffer: by hand too, the library's request
bits = np.array([0b1111 ^ (1 << (r % 4)) for r in everyone], dtype=np.int32)
band = np.zeros(1, np.int32)
seen.clear()
req = w.Iallreduce(bits[rank : rank + 1], band, MPI.BAND)
expect(not isinstance(req, MPI.Request), f"Iallreduce BAND: {type(req).__name__}, expected the library's request")
req.Wait()
expected_band = functools.reduce(operator.and_, [int(b) for b in bits])
expect(band[0] == expected_band, f"Iallreduce BAND gave {band[0]}, expected {expected_band}")
expect(seen == ["i" + ALGORITHM], f"Iallreduce BAND reached the library as {seen}")
spec_out = np.zeros(14)
w.Iallreduce(data(rank), [spec_out, 7, MPI.DOUBLE], MPI.SUM).Wait()
expect(
    np.array_equal(spec_out[:7], oracle(everyone)) and not spec_out[7:].any(),
    f"Iallreduce [buf, 7, DOUBLE]: {spec_out}",
)
# MAXLOC: MPI's request and MPI's result
loc = np.array([(float(rank % 2), rank)], dtype=DOUBLE_INT)
loc_out = np.zeros_like(loc)
seen.clear()
req = w.Iallreduce([loc, MPI.DOUBLE_INT], [loc_out, MPI.DOUBLE_INT], MPI.MAXLOC)
expect(isinstance(req, MPI.Request), f"Iallreduce MAXLOC: {type(req).__name__}, expected MPI's request")
req.Wait()
want_loc = (1.0, 1) if size > 1 else (0.0, 0)
expect(tuple(loc_out[0].tolist()) == want_loc, f"Iallreduce MAXLOC gave {loc_out[0]}, expected {want_loc}")
expect(seen == [], f"Iallreduce MAXLOC reached the library: {seen}")


# -- every buffer form mpi4py takes, the wider ops and dtypes, and what goes to MPI ------------------------------
class DLPackOnly:
    """Host memory seen only through DLPack (no buffer protocol), as a GPU library's CPU arrays are."""

    def __init__(self, arr):
        self.arr = arr

    def __dlpack__(self, **kwargs):
        return self.arr.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.arr.__dlpack_device__()


class HostCAI:
    """The CUDA array interface on host memory: it may be device memory as far as the wrapper knows."""

    def __init__(self, arr):
        self.arr = arr
        self.__cuda_array_interface__ = {
            "version": 3,
            "data": (arr.__array_interface__["data"][0], False),
            "typestr": arr.dtype.str,
            "shape": arr.shape,
            "strides": None,
        }


def python_reduce(fn, per_rank):
    """Element by element over every rank's values, with Python numbers (the oracle)."""
    return [functools.reduce(fn, column) for column in zip(*per_rank)]


def ints(r, n=9):
    """Rank r's small integers, zeros among them, different on each rank."""
    return [((i * 7 + r * 3) % 11) - 4 if (i + r) % 4 else 0 for i in range(n)]


def check_route(what, expect_hand, method, *args):
    """Run ``w.<method>(*args)``; it must reach the library (by hand) or not (MPI's own), as expected."""
    seen.clear()
    getattr(w, method)(*args)
    by_hand = seen == [ALGORITHM]
    expect(by_hand == expect_hand and (by_hand or seen == []), f"{what}: reached the library as {seen}")


everyone_ints = [ints(r) for r in everyone]
want_sum = python_reduce(operator.add, everyone_ints)
forms = {
    "numpy": lambda a: a,
    "array.array": lambda a: array.array("i", a.tobytes()),
    "bytearray [buf, MPI.INT]": lambda a: [bytearray(a.tobytes()), MPI.INT],
    "memoryview [buf, 'i']": lambda a: [memoryview(bytearray(a.tobytes())), "i"],
    "DLPack": lambda a: DLPackOnly(a.copy()),
}
for name, form in forms.items():
    recv = form(np.zeros(9, np.int32))
    send = form(np.array(ints(rank), np.int32))
    check_route(f"Allreduce {name}", True, "Allreduce", send, recv, MPI.SUM)
    raw = recv.arr if isinstance(recv, DLPackOnly) else recv[0] if isinstance(recv, list) else recv
    got = np.frombuffer(raw, np.int32).tolist()
    expect(got == want_sum, f"Allreduce {name}: {got} != {want_sum}")
# counts and displacements: only the elements named change
for name, spec in [
    ("[buf, count, displ, datatype]", lambda b: [b, 4, 3, MPI.INT]),
    ("[buf, (count, displ), datatype]", lambda b: [b, (4, 3), MPI.INT]),
]:
    buf = np.array(ints(rank), np.int32)
    check_route(f"Allreduce IN_PLACE {name}", True, "Allreduce", MPI.IN_PLACE, spec(buf), MPI.SUM)
    expect(buf.tolist() == ints(rank)[:3] + want_sum[3:7] + ints(rank)[7:], f"Allreduce {name}: {buf.tolist()}")

# MPI's logical and bitwise ops, on integers and bool, with C's meaning (a logical op gives 1 or 0)
LOGIC = [  # MPI.Op is not hashable
    (MPI.LAND, lambda a, b: int(bool(a) and bool(b))),
    (MPI.LOR, lambda a, b: int(bool(a) or bool(b))),
    (MPI.LXOR, lambda a, b: int(bool(a) != bool(b))),
    (MPI.BAND, operator.and_),
    (MPI.BOR, operator.or_),
    (MPI.BXOR, operator.xor),
]
for op, fn in LOGIC:
    for dtype in (np.int16, np.uint8):
        out = np.zeros(9, dtype)
        check_route(f"Allreduce {op} {dtype.__name__}", True, "Allreduce", np.array(ints(rank)).astype(dtype), out, op)
        want = np.array(python_reduce(fn, [ints(r) for r in everyone])).astype(dtype)  # two's complement wrap
        expect(np.array_equal(out, want), f"Allreduce {op} {dtype.__name__}: {out} != {want}")
    if op in (MPI.LAND, MPI.LOR, MPI.LXOR):
        flags = np.array([v > 0 for v in ints(rank)])
        check_route(f"Allreduce {op} bool", True, "Allreduce", MPI.IN_PLACE, [flags, MPI.C_BOOL], op)
        want = [bool(v) for v in python_reduce(fn, [[v > 0 for v in ints(r)] for r in everyone])]
        expect(flags.tolist() == want, f"Allreduce {op} bool: {flags.tolist()} != {want}")

# long double and complex long double: compared by value (x87 padding bytes are noise)
for datatype, dtype, ops in [
    (MPI.LONG_DOUBLE, np.longdouble, [(MPI.SUM, operator.add), (MPI.MAX, max), (MPI.PROD, operator.mul)]),
    (MPI.C_LONG_DOUBLE_COMPLEX, np.clongdouble, [(MPI.SUM, operator.add)]),
]:
    for op, fn in ops:
        vals = [[v + (1j * v if dtype is np.clongdouble else 0) for v in ints(r)] for r in everyone]
        buf = np.array(vals[rank], dtype)
        check_route(f"Allreduce {datatype.Get_name()} {op}", True, "Allreduce", MPI.IN_PLACE, [buf, datatype], op)
        got = [complex(v) for v in buf]
        expect(got == [complex(v) for v in python_reduce(fn, vals)], f"Allreduce {datatype.Get_name()} {op}: {got}")
root_val = np.array([1 + 2j, -3j], np.clongdouble) if rank == 0 else np.zeros(2, np.clongdouble)
w.Bcast([root_val, MPI.C_LONG_DOUBLE_COMPLEX], root=0)
expect([complex(v) for v in root_val] == [1 + 2j, -3j], f"Bcast complex long double: {root_val}")

# MPI's own: MAXLOC, a user-defined op, the CUDA array interface, a derived datatype, with MPI's answers
pairs = np.array([(float(v), rank) for v in ints(rank)], dtype=DOUBLE_INT)
out_pairs = np.zeros_like(pairs)
check_route("Allreduce MAXLOC", False, "Allreduce", [pairs, MPI.DOUBLE_INT], [out_pairs, MPI.DOUBLE_INT], MPI.MAXLOC)
best = [max((everyone_ints[r][i], -r) for r in everyone) for i in range(9)]  # ties: the lowest rank
expect(
    out_pairs["v"].tolist() == [float(v) for v, _ in best] and out_pairs["i"].tolist() == [-r for _, r in best],
    f"Allreduce MAXLOC: {out_pairs.tolist()}",
)


def absmax(inbuf, inoutbuf, datatype):
    a, b = np.frombuffer(inbuf, np.int32), np.frombuffer(inoutbuf, np.int32)
    b[...] = np.where(np.abs(a) > np.abs(b), a, b)


user_op = MPI.Op.Create(absmax, commute=True)
out = np.zeros(9, np.int32)
check_route("Allreduce user-defined op", False, "Allreduce", np.array(ints(rank), np.int32), out, user_op)
want = [max((v for v in column), key=abs) for column in zip(*everyone_ints)]
expect([abs(v) for v in out.tolist()] == [abs(v) for v in want], f"Allreduce user op: {out.tolist()} vs {want}")
cai_out = np.zeros(9, np.int32)
check_route(
    "Allreduce CUDA array interface",
    False,
    "Allreduce",
    HostCAI(np.array(ints(rank), np.int32)),
    HostCAI(cai_out),
    MPI.SUM,
)
expect(cai_out.tolist() == want_sum, f"Allreduce CUDA array interface: {cai_out.tolist()}")
triple = MPI.INT.Create_contiguous(3).Commit()  # MPICH reduces no derived type: a broadcast moves it
derived = np.array(ints(rank), np.int32)
said_derived = w.explain("Bcast", [derived, 3, triple], 0)
expect(said_derived.startswith("Bcast: MPI's own Bcast: derived datatype"), f"explain derived: {said_derived!r}")
w.Bcast([derived, 3, triple], root=0)
expect(derived.tolist() == ints(0), f"Bcast derived datatype: {derived.tolist()}")
triple.Free()

# explain: which path, and why, for the same arguments as the call
x = np.zeros(9, np.int32)
said = {
    "by hand": w.explain("Allreduce", MPI.IN_PLACE, x, MPI.SUM),
    "MAXLOC": w.explain("Allreduce", [pairs, MPI.DOUBLE_INT], [out_pairs, MPI.DOUBLE_INT], MPI.MAXLOC),
    "user op": w.explain("Allreduce", x, np.zeros(9, np.int32), user_op),
    "device": w.explain("Iallreduce", HostCAI(x), HostCAI(np.zeros(9, np.int32)), MPI.SUM),
    "bool sum": w.explain("Allreduce", MPI.IN_PLACE, np.zeros(3, bool), MPI.SUM),
    "mismatch": w.explain("Allreduce", np.zeros(4), np.zeros(5), MPI.SUM),
    "Gather": w.explain("Gather", x, None),
    "Reduce": w.explain("Reduce", x, np.zeros(9, np.int32), MPI.MIN, root=0),
    "Bcast": w.explain("Bcast", [x, MPI.INT], 0),
}
starts = {
    "by hand": f"Allreduce: by hand: algorithm {ALGORITHM!r}, 9 x int32, op sum, in place",
    "MAXLOC": "Allreduce: MPI's own Allreduce: op MPI.MAXLOC is not implemented by hand",
    "user op": "Allreduce: MPI's own Allreduce: op a user-defined MPI.Op is not implemented by hand",
    "device": "Iallreduce: MPI's own Iallreduce: a CUDA array interface buffer",
    "bool sum": "Allreduce: MPI's own Allreduce: op 'sum' is not defined on bool",
    "mismatch": "Allreduce: invalid call: raises ValueError on every rank: Allreduce: send buffer (4 x float64)",
    "Gather": "Gather: MPI's own (the wrapper runs Allreduce, Iallreduce, Reduce, Bcast, Allgather,",
    "Reduce": "Reduce: by hand: binomial tree to root 0, 9 x int32, op min",
    "Bcast": "Bcast: by hand: binomial tree from root 0, 9 x int32",
}
for key, start in starts.items():
    expect(said[key].startswith(start), f"explain {key}: {said[key]!r}, expected it to start {start!r}")
user_op.Free()

failed = world.allreduce(len(failures))
if rank == 0:
    print(f"{size} ranks: {failed} failures", flush=True)
raise SystemExit(1 if failed else 0)
