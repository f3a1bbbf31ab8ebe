"""Run under mpiexec: mpi4py's own collective tests, every communicator they use wrapped by ``collectives.wrap``.

``upstream/`` holds mpi4py's ``test_cco_buf.py`` and ``test_cco_nb_buf.py`` and the helpers they
import, unchanged (see README.md there). For each algorithm named, and for ``mpi`` (the plain
communicators: the control), both files run with ``MPI.COMM_WORLD`` and ``MPI.COMM_SELF`` (the
class attributes the tests read, and the duplicates their ``setUp`` makes) replaced by
``collectives.wrap(comm, algorithm)``. The algorithm changes only Allreduce and Iallreduce (the
other collectives run fixed building blocks), so by default the control and ``ring`` run the
whole files and the other algorithms their Allreduce tests (``--whole all``: every algorithm the
whole files). A test passes when it passes on every rank. Rank 0 prints, per algorithm and file::

    conformance mpi=MPICH p=3 algorithm=ring file=test_cco_buf: ran 72 passed 72 failed 0 skipped 0 hand 1234 mpi 567

``hand`` and ``mpi`` count the wrapper's calls that ran by hand and that went to MPI's own method
(so a file cannot pass by handing everything to MPI); then the failing tests, each with the first
line of its error, and finally ``conformance done``. Allreduce calls that ran by hand must reach
the library with the algorithm asked for: any other algorithm counts as a failure.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
import types
import unittest
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().with_name("upstream")))
# No GPU here: arrayimpl would add CuPy and Numba device arrays, which fail without one, wrapped or not.
sys.modules["cupy"] = None
sys.modules["numba"] = None

from mpi4py import MPI  # noqa: E402

import collectives  # noqa: E402
from collectives import api, nonblocking  # noqa: E402
from collectives.mpi_wrap import WrappedComm  # noqa: E402

FILES = ("test_cco_buf", "test_cco_nb_buf")
TIMEOUT = 120.0  # seconds the library waits for a rank before raising, instead of hanging the launch

tally: Counter[str] = Counter()
reasons: Counter[str] = Counter()  # why calls went to MPI (--why prints them)
reached: Counter[str] = Counter()  # the algorithms hand-run Allreduce and Iallreduce calls reached the library with

real_route, real_allreduce, real_iallreduce = WrappedComm._route, api.allreduce, nonblocking.iallreduce


def counting_route(self, method, *args, **kwargs):
    route = real_route(self, method, *args, **kwargs)
    tally["mpi" if route.run is None else "hand"] += 1
    if route.run is None:
        reasons[route.why.split(" (")[0]] += 1
    return route


def spy_allreduce(buf, comm=None, op="sum", algorithm="ring", **kwargs):
    reached[algorithm] += 1
    return real_allreduce(buf, comm, op, algorithm, **kwargs)


def spy_iallreduce(buf, comm=None, op="sum", algorithm="ring", **kwargs):
    reached[algorithm] += 1
    return real_iallreduce(buf, comm, op, algorithm, **kwargs)


WrappedComm._route, api.allreduce, nonblocking.iallreduce = counting_route, spy_allreduce, spy_iallreduce


def mpi_with_wrapped_comms(algorithm: str) -> types.ModuleType:
    """A stand-in for ``mpi4py.MPI``: its attributes, with COMM_WORLD and COMM_SELF wrapped."""
    proxy = types.ModuleType("MPI")
    proxy.__getattr__ = lambda name: getattr(MPI, name)  # PEP 562: everything else is mpi4py's
    proxy.COMM_WORLD = collectives.wrap(MPI.COMM_WORLD, algorithm, timeout=TIMEOUT)
    proxy.COMM_SELF = collectives.wrap(MPI.COMM_SELF, algorithm, timeout=TIMEOUT)
    return proxy


def use(module: types.ModuleType, mpi: types.ModuleType | None) -> None:
    """Point ``module``'s tests at ``mpi``'s communicators (None: mpi4py's own)."""
    module.MPI = mpi or MPI  # read when a test runs: setUp's MPI.COMM_WORLD.Dup()
    for cls in vars(module).values():
        if isinstance(cls, type) and "COMM" in vars(cls):  # class attributes were read at import
            original = cls.__dict__.get("_original_comm", cls.COMM)
            cls._original_comm = original
            if original == MPI.COMM_WORLD:
                cls.COMM = (mpi or MPI).COMM_WORLD
            elif original == MPI.COMM_SELF:
                cls.COMM = (mpi or MPI).COMM_SELF


def outcomes(module: types.ModuleType, only: str | None = None) -> dict[str, str]:
    """test id -> "ok", "skip" or "fail: <last line of the error>" on this rank; ``only``: ids containing it."""
    every = _tests(unittest.defaultTestLoader.loadTestsFromModule(module))
    tests = [t for t in every if only is None or only in t.id()]
    suite = unittest.TestSuite(tests)
    found = {test.id(): "ok" for test in tests}
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    for test, _ in result.skipped:
        found[test.id()] = "skip"
    for test, trace in result.failures + result.errors:
        lines = [line for line in trace.strip().splitlines() if line.strip()]
        found[test.id()] = "fail: " + (lines[-1] if lines else "?")
    return found


def _tests(suite: unittest.TestSuite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _tests(item)
        else:
            yield item


def combine(per_rank: list[dict[str, str]]) -> dict[str, str]:
    """A test's outcome over all ranks: the first failure, else skipped if skipped anywhere, else ok."""
    out: dict[str, str] = {}
    for test in per_rank[0]:
        seen = [r.get(test, "fail: missing on a rank") for r in per_rank]
        out[test] = next((s for s in seen if s.startswith("fail")), "skip" if "skip" in seen else "ok")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", default=",".join(["mpi", *collectives.ALGORITHMS]))
    parser.add_argument("--files", default=",".join(FILES))
    parser.add_argument(
        "--whole",
        default="mpi,ring",
        help="algorithms that run the whole files ('all' for every one); the others run the tests of Allreduce"
        " (blocking and not), the only calls an algorithm changes (default: %(default)s)",
    )
    parser.add_argument("--why", action="store_true", help="print why calls went to MPI (rank 0's counts)")
    args = parser.parse_args()
    world = MPI.COMM_WORLD
    rank, p = world.Get_rank(), world.Get_size()
    modules = [importlib.import_module(name) for name in args.files.split(",")]
    vendor = MPI.get_vendor()[0]
    failed = 0
    for algorithm in args.algorithms.split(","):
        for module in modules:
            use(module, None if algorithm == "mpi" else mpi_with_wrapped_comms(algorithm))
            tally.clear()
            reached.clear()
            reasons.clear()
            whole = args.whole == "all" or algorithm in args.whole.split(",")
            mine = outcomes(module, None if whole else ".testAllreduce")
            wrong = sorted(set(reached) - {algorithm})
            if algorithm != "mpi" and wrong:
                mine["algorithm reached"] = f"fail: Allreduce ran {wrong}, not {algorithm!r}"
            combined = combine(world.allgather(mine))
            counts = world.allreduce(tally)
            use(module, None)
            if rank:
                continue
            bad = {t: o for t, o in combined.items() if o.startswith("fail")}
            failed += len(bad)
            n_skip = sum(o == "skip" for o in combined.values())
            print(
                f"conformance mpi={vendor} p={p} algorithm={algorithm} file={module.__name__}"
                f"{'' if whole else ' (Allreduce tests)'}: ran {len(combined)}"
                f" passed {len(combined) - len(bad) - n_skip} failed {len(bad)} skipped {n_skip}"
                f" hand {counts['hand']} mpi {counts['mpi']}",
                flush=True,
            )
            for test, outcome in sorted(bad.items())[:20]:
                print(f"  FAIL {test}: {outcome[6:][:300]}", flush=True)
            if args.why:
                for why, n in reasons.most_common():
                    print(f"  to MPI {n:6d}  {why}", flush=True)
    if rank == 0:
        print("conformance done", flush=True)
    raise SystemExit(1 if world.bcast(failed) else 0)


if __name__ == "__main__":
    main()
