"""One-call entry points: simulate an algorithm for its time, or run it on data and check the result."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from collectives.algorithms import ALGORITHMS, AlgorithmSpec
from collectives.algorithms import resolve as resolve_name
from collectives.link import Link
from collectives.ops import ReduceOp, get_op
from collectives.sim.cost_model import CostModel
from collectives.sim.errors import WrongResultError
from collectives.sim.machine import DEFAULT_MACHINE, machine_from_options
from collectives.sim.payload import RealPayload, SizesPayload
from collectives.sim.result import SimResult
from collectives.sim.scheduler import Simulator
from collectives.sim.symbolic import SymbolicPayload
from collectives.sim.topology import Topology

AlgorithmLike = str | AlgorithmSpec | Callable[..., Iterator[Any]]


def resolve(algorithm: AlgorithmLike) -> tuple[str, Callable[..., Iterator[Any]], AlgorithmSpec | None]:
    """(name, generator function, spec or None) for a registered name, a spec, or a bare function."""
    if isinstance(algorithm, str):
        spec = ALGORITHMS[resolve_name(algorithm, auto=False)]
        return spec.name, spec.run, spec
    if isinstance(algorithm, AlgorithmSpec):
        return algorithm.name, algorithm.run, algorithm
    if callable(algorithm):
        return getattr(algorithm, "__name__", "algorithm"), algorithm, None
    raise TypeError(f"expected an algorithm name, an AlgorithmSpec or a generator function, got {algorithm!r}")


def elements(nbytes: int, dtype: Any) -> int:
    itemsize = np.dtype(dtype).itemsize
    if nbytes % itemsize:
        raise ValueError(f"{nbytes} bytes is not a whole number of {np.dtype(dtype)} elements ({itemsize} B each)")
    return nbytes // itemsize


ENGINES = ("auto", "fast", "reference")


def simulate(
    algorithm: AlgorithmLike,
    p: int,
    nbytes: int,
    *,
    model: CostModel | None = None,
    topology: Topology | None = None,
    link: str | Link | None = None,
    dtype: Any = np.float32,
    op: str | ReduceOp = "sum",
    seed: int | None = None,
    timeline: bool = False,
    engine: str = "auto",
) -> SimResult:
    """Predict the time of one allreduce of ``nbytes`` per rank on ``p`` ranks, without any data.

    The machine is the command line's: without ``model``, the default of ``python -m
    collectives.sim run`` (textbook model, ``cpu`` device, ``ib-edr`` links, fully connected)
    with ``link`` if given (a preset name, "10Gbps,20us" or a Link, as ``--link``); with ``model``,
    that model on ``topology`` (default: fully connected links of the model's beta).
    The algorithm runs message by message on payload-free buffers (sizes-only mode); the result
    carries the predicted time, algbw/busbw, per-rank and per-link counters and, with
    ``timeline=True``, every message and reduction for :func:`collectives.sim.timeline.plot`.

    ``engine``: "fast" records the algorithm's schedule once and times it with the compiled loop
    (:mod:`collectives.sim.replay`; the same numbers as the reference, many times faster);
    "reference" drives the generators with :class:`Simulator`; "auto" (default) is fast where
    the fast engine applies (no ``seed``, an algorithm that records cleanly) and the reference
    elsewhere. ``result.engine`` says which ran and, on a fallback, why.
    """
    if engine not in ENGINES:
        raise ValueError(f"simulate: engine must be one of {list(ENGINES)}, got {engine!r}")
    name, run, _ = resolve(algorithm)
    n = elements(nbytes, dtype)
    if model is None:
        machine = DEFAULT_MACHINE if link is None else machine_from_options(link=link)
        model, default_topology = machine.build(p)
        topology = topology or default_topology
    elif link is not None:
        raise ValueError("simulate: pass a link or a model, not both (the link builds the model)")
    reduce_op = get_op(op)
    why_not = ""
    if engine == "fast" and seed is not None:
        raise ValueError("simulate: engine='fast' cannot take a seed (random tie-breaking is the reference's)")
    if engine != "reference":
        result, why_not = _fast(run, p, n, dtype, reduce_op, model, topology, seed, timeline)
        if result is not None:
            result.nbytes, result.algorithm = nbytes, name
            return result
    payload = SizesPayload()
    sim = Simulator(p, payload, model, topology, seed=seed, timeline=timeline)
    buffers = [payload.buffer(n, dtype) for _ in range(p)]
    result = sim.run(run, buffers, reduce_op)  # raises the algorithm's error, if that is why the fast engine declined
    if engine == "fast":
        raise ValueError(f"simulate: the fast engine cannot run this simulation: {why_not}")
    result.nbytes, result.algorithm = nbytes, name
    result.engine = "reference" + (f" (fast engine not used: {why_not})" if why_not else "")
    return result


def _fast(
    run: Callable[..., Iterator[Any]],
    p: int,
    n: int,
    dtype: Any,
    op: ReduceOp,
    model: CostModel | None,
    topology: Topology | None,
    seed: int | None,
    timeline: bool,
) -> tuple[SimResult | None, str]:
    """(the fast engine's result, "") or (None, why it does not apply)."""
    from collectives.sim.record import NotRecordable, record
    from collectives.sim.replay import replay

    if seed is not None:
        return None, "a seed randomises tie-breaking, which only the reference scheduler does"
    if p < 1:
        return None, "no ranks"
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        schedule = record(run, p, n, dtype, op)
    except NotRecordable as e:
        return None, f"the recording stopped: {e}"
    result = replay(schedule, model, topology, timeline)
    if result is None:
        return None, "ranks are left blocked (a deadlock)"
    result.wall, result.cpu = time.perf_counter() - wall, time.process_time() - cpu
    result.engine = "fast"
    return result, ""


def exact_inputs(p: int, n: int, dtype: Any, op: str, seed: int = 0) -> list[np.ndarray]:
    """Small-integer inputs whose reduction is exact in any order and any dtype (as nccl-tests does)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(p):
        if dtype.kind == "b":
            vals = rng.integers(0, 2, n).astype(bool)
        elif op == "prod":
            vals = rng.choice(np.array([1, 1, 1, -1] if dtype.kind in "ifc" else [1]), n)
        elif dtype.kind == "u":
            vals = rng.integers(0, 4, n)
        else:
            vals = rng.integers(-3, 4, n)
        out.append(np.asarray(vals).astype(dtype))
    return out


def run_real(
    algorithm: AlgorithmLike,
    inputs: list[np.ndarray],
    op: str | ReduceOp = "sum",
    *,
    model: CostModel | None = None,
    topology: Topology | None = None,
    seed: int | None = None,
    jitter: float = 0.0,
    timeline: bool = False,
) -> SimResult:
    """Run the algorithm on real data, one input array per rank; ``result.buffers`` are the outputs."""
    name, run, _ = resolve(algorithm)
    p = len(inputs)
    buffers = [np.array(x, copy=True).reshape(-1) for x in inputs]
    sim = Simulator(p, RealPayload(), model, topology, seed=seed, jitter=jitter, timeline=timeline)
    result = sim.run(run, buffers, get_op(op))
    result.buffers, result.algorithm = buffers, name
    result.nbytes = buffers[0].nbytes if buffers else 0
    return result


def check_real(
    algorithm: AlgorithmLike,
    p: int,
    n: int,
    dtype: Any = np.int64,
    op: str = "sum",
    seed: int | None = 0,
    jitter: float = 1.0,
) -> SimResult:
    """Run on exact-valued inputs and compare every rank with numpy; raise WrongResultError on a mismatch.

    Delivery order is randomised from ``seed`` (None: deterministic order). Also checks that all
    ranks end bitwise identical, which data-parallel replicas need.
    """
    reduce_op = get_op(op)
    inputs = exact_inputs(p, n, dtype, reduce_op.name, seed=0 if seed is None else seed)
    expected = reduce_op.reference(inputs)
    model = CostModel(alpha=1.0) if jitter else None  # unit latency plus jitter: random but causal order
    result = run_real(algorithm, inputs, reduce_op, model=model, seed=seed, jitter=jitter if seed is not None else 0.0)
    for out in result.buffers:
        reduce_op.finalize(out, p)  # avg divides once at the end, as the API does after the algorithm
    for r, out in enumerate(result.buffers):
        if not np.array_equal(out, expected, equal_nan=False):
            bad = np.flatnonzero(out != expected)
            first = int(bad[0]) if bad.size else 0
            raise WrongResultError(
                f"{result.algorithm}: p={p} n={n} {np.dtype(dtype)} {op} seed={seed}: rank {r} is wrong in "
                f"{bad.size} of {n} elements; first at [{first}]: got {out[first]!r}, expected {expected[first]!r}"
            )
        if out.tobytes() != result.buffers[0].tobytes():
            raise WrongResultError(f"{result.algorithm}: p={p} n={n}: rank {r} differs bitwise from rank 0")
    return result


def check_symbolic(
    algorithm: AlgorithmLike, p: int, n: int, seed: int | None = None, dtype: Any = np.float32
) -> SimResult:
    """Prove that every element of every rank ends with each rank's contribution exactly once.

    Raises WrongResultError naming the ranks and element ranges that miss contributions, or a
    HazardError / PortabilityError / DeadlockError for the other kinds of bugs.
    """
    name, run, _ = resolve(algorithm)
    payload = SymbolicPayload(p)
    buffers = [payload.input(r, n, dtype) for r in range(p)]
    randomised = seed is not None
    sim = Simulator(
        p, payload, CostModel(alpha=1.0) if randomised else None, seed=seed, jitter=1.0 if randomised else 0.0
    )
    result = sim.run(run, buffers, get_op("sum"))
    result.buffers, result.algorithm = buffers, name
    problems = [msg for r, buf in enumerate(buffers) for msg in payload.problems(r, buf, limit=2)]
    if problems:
        shown = "\n  ".join(problems[:8])
        more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise WrongResultError(f"{name}: symbolic check failed for p={p} n={n}:\n  {shown}{more}")
    return result
