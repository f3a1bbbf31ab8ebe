"""Hypothesis properties of every allreduce algorithm, run on the simulator, each shown able to fail.

Hypothesis draws the rank count (1 to 64), the element count (0, fewer than the ranks so some
chunks are empty, or a few per rank), the dtype, the op and the delivery order (a seed for the
simulator's random tie-breaks and early or late message copies; None for its fixed order), for
every registered algorithm and for the segmented ones cut into segments of a few elements.

The properties:

1. **exact result**: on exact-valued inputs every rank ends with the answer of
   ``tests/oracle.py`` (Python arithmetic, not ``collectives.ops``), whatever the delivery order;
2. **replicas agree**: on random floats, where the order of reduction decides the bits, every
   rank ends with the same bits, and the same bits under another delivery order;
3. **declared cost**: the busiest rank sends as many messages and bytes as its ``Cost`` says.

Each property is shown to fail on a planted bug (registered for the test like a user's
algorithm) that the other properties let through, so none of them passes vacuously.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from oracle import expected_allreduce

import collectives
from collectives import REGISTRY, AlgorithmSpec
from collectives.algorithms.double_tree import double_tree_allreduce, double_tree_cost
from collectives.algorithms.naive import naive_cost
from collectives.algorithms.ring import ring_allreduce, ring_cost
from collectives.algorithms.spec import Cost
from collectives.algorithms.tree import tree_pipelined_allreduce, tree_pipelined_cost
from collectives.ops import NUMERIC_DTYPES, OPS, get_op
from collectives.sim import CostModel, run_real, simulate

MAX_RANKS = 64
SEGMENT = 24  # bytes: a few elements per segment, so small buffers cross many
SEGMENTED = [
    AlgorithmSpec(f"{name}_seg{SEGMENT}", partial(run, segment_bytes=SEGMENT), partial(cost, segment_bytes=SEGMENT), "")
    for name, run, cost in [
        ("ring", ring_allreduce, ring_cost),
        ("tree_pipelined", tree_pipelined_allreduce, tree_pipelined_cost),
        ("double_tree", double_tree_allreduce, double_tree_cost),
    ]
]
ALGORITHMS = {**{name: REGISTRY[name] for name in sorted(REGISTRY)}, **{s.name: s for s in SEGMENTED}}
DTYPES = [*NUMERIC_DTYPES, np.dtype(bool)]
# 25 examples per property and algorithm keep the suite quick; PROPERTY_EXAMPLES=2000 searches harder.
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The planted bugs: a fixed, modest search, no shrinking (the first counterexample is enough).
PLANTED = settings(max_examples=60, deadline=None, database=None, derandomize=True, phases=[Phase.generate])


@dataclass(frozen=True)
class Case:
    p: int
    n: int
    dtype: np.dtype
    op: str
    seed: int | None  # the delivery order; None: the simulator's fixed order
    data: int  # seeds the inputs

    def run(self, spec: AlgorithmSpec, inputs: list[np.ndarray], op: str, seed: int | None) -> list[np.ndarray]:
        ordered = seed is None
        result = run_real(
            spec, inputs, op, model=None if ordered else CostModel(alpha=1.0), seed=seed, jitter=0.0 if ordered else 1.0
        )
        return result.buffers


@st.composite
def cases(draw: st.DrawFn, max_ranks: int = MAX_RANKS) -> Case:
    p = draw(st.integers(1, max_ranks))
    n = draw(st.one_of(st.just(0), st.integers(1, max(1, p - 1)), st.integers(p, 3 * p + 7)))
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from([name for name in sorted(OPS) if get_op(name).check_dtype(dtype) is None]))
    seed = draw(st.none() | st.integers(0, 2**32 - 1))
    return Case(p, n, dtype, op, seed, draw(st.integers(0, 2**32 - 1)))


def exact_inputs(case: Case) -> list[np.ndarray]:
    """Small integers (Gaussian integers for complex; units for prod), so every order gives one exact answer."""
    rng = np.random.default_rng(case.data)
    kind, shape = case.dtype.kind, (case.p, case.n)
    if kind == "b":
        vals = rng.integers(0, 2, shape)
    elif case.op == "prod":  # magnitudes stay 1 (or 0) however many ranks multiply
        units = [1, 1, 1, 0] if kind == "u" else [1, -1, 1, 0] + ([1j, -1j] if kind == "c" else [])
        vals = rng.choice(np.array(units), shape)
    elif kind == "u":
        vals = rng.integers(0, 4, shape)
    else:
        vals = rng.integers(-3, 4, shape) + (1j * rng.integers(-3, 4, shape) if kind == "c" else 0)
    return list(np.asarray(vals).astype(case.dtype))


# -------------------------------------------------------------------------------- the properties
def exact_result(spec: AlgorithmSpec, case: Case) -> None:
    inputs = exact_inputs(case)
    expected = expected_allreduce(case.op, inputs)
    op = get_op(case.op)
    for rank, out in enumerate(case.run(spec, inputs, case.op, case.seed)):
        op.finalize(out, case.p)  # avg: the API divides once after the algorithm
        assert out.dtype == expected.dtype and np.array_equal(out, expected), (
            f"{spec.name}: {case}: rank {rank} holds {out[:8]}, expected {expected[:8]}"
        )


def replicas_agree(spec: AlgorithmSpec, case: Case) -> None:
    dtype = case.dtype if case.dtype.kind in "fc" else np.dtype(np.float32)
    rng = np.random.default_rng(case.data)
    inputs = [(rng.standard_normal(case.n) * 10.0 ** rng.integers(-3, 4, case.n)).astype(dtype) for _ in range(case.p)]
    first = case.run(spec, inputs, "sum", case.seed)
    other = case.run(spec, inputs, "sum", (case.data if case.seed is None else case.seed) + 1)
    for rank, out in enumerate(first):
        assert out.tobytes() == first[0].tobytes(), f"{spec.name}: {case}: rank {rank} differs bitwise from rank 0"
    assert other[0].tobytes() == first[0].tobytes(), f"{spec.name}: {case}: the bits depend on the delivery order"


def declared_cost(spec: AlgorithmSpec, case: Case) -> None:
    itemsize = case.dtype.itemsize
    declared = spec.cost(case.p, case.n * itemsize, itemsize)
    busiest = simulate(spec, case.p, case.n * itemsize, dtype=case.dtype).busiest()
    said = (declared.messages_per_rank, declared.bytes_sent_per_rank)
    sent = (busiest["messages_sent"], busiest["bytes_sent"])
    assert sent == said, f"{spec.name}: {case}: the busiest rank sent {sent} (messages, bytes); the cost says {said}"


PROPERTIES = {"exact result": exact_result, "replicas agree": replicas_agree, "declared cost": declared_cost}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("prop", sorted(PROPERTIES))
def test_property_holds_for_every_algorithm(prop, name):
    @PROPERTY
    @given(case=cases())
    def holds(case: Case) -> None:
        PROPERTIES[prop](ALGORITHMS[name], case)

    holds()


# -------------------------------------------------------------------------------- planted bugs
def forgets_the_last_rank(t, buf, op):
    """Reduce to rank 0, then broadcast; rank 0 receives the last rank's data but never adds it."""
    p, r = t.size, t.rank
    if p == 1:
        return
    if r == 0:
        incoming = t.scratch(buf.size, buf.dtype)
        for source in range(1, p):
            yield t.recv(incoming, source, 0)
            if source < p - 1:  # the bug
                t.reduce(op, buf, incoming)
        for dest in range(1, p):
            yield t.send(buf, dest, 1)
    else:
        yield t.send(buf, 0, 0)
        yield t.recv(buf, 0, 1)


def each_rank_in_its_own_order(t, buf, op):
    """Every rank gathers every contribution and adds them starting from its own: exact on
    integers, but on floats rank r rounds (x_r + x_r+1) + ... and the replicas drift apart."""
    p, r = t.size, t.rank
    if p == 1:
        return
    copies = {s: t.scratch(buf.size, buf.dtype) for s in range(p) if s != r}
    sends = [t.isend(buf, d, 0) for d in range(p) if d != r]
    yield t.wait(*sends, *(t.irecv(copies[s], s, 0) for s in copies))
    for k in range(1, p):
        t.reduce(op, buf, copies[(r + k) % p])


def ring_cost_without_empty_messages(p: int, nbytes: int, itemsize: int = 1) -> Cost:
    """The ring's cost as if empty chunks were never sent: right from p elements up, too few messages below."""
    cost = ring_cost(p, nbytes, itemsize)
    n = nbytes // itemsize
    return cost if n >= p else replace(cost, messages_per_rank=2 * min(n, p - 1))


PLANTED_BUGS = {
    "exact result": AlgorithmSpec("planted_forgets_last_rank", forgets_the_last_rank, naive_cost, "planted bug"),
    "replicas agree": AlgorithmSpec("planted_own_order", each_rank_in_its_own_order, naive_cost, "planted bug"),
    "declared cost": AlgorithmSpec("planted_miscounted_ring", ring_allreduce, ring_cost_without_empty_messages, ""),
}


@pytest.fixture
def registered():
    """Register the planted algorithms as a user would, and remove them afterwards."""
    for spec in PLANTED_BUGS.values():
        collectives.register(spec)
    yield {prop: REGISTRY[spec.name] for prop, spec in PLANTED_BUGS.items()}
    for spec in PLANTED_BUGS.values():
        collectives.unregister(spec.name)


def search(prop: str, spec: AlgorithmSpec) -> AssertionError | None:
    """Run one property on one algorithm with the planted-bug settings; the counterexample's error, or None."""

    @PLANTED
    @given(case=cases())
    def holds(case: Case) -> None:
        PROPERTIES[prop](spec, case)

    try:
        holds()
    except AssertionError as e:
        return e
    return None


# What each planted bug gets right: the own-order bug's messages are not naive's, so its cost is left out.
LETS_THROUGH = {
    "exact result": ["declared cost", "replicas agree"],
    "replicas agree": ["exact result"],
    "declared cost": ["exact result", "replicas agree"],
}


@pytest.mark.parametrize("prop", sorted(PROPERTIES))
def test_each_property_fails_on_its_planted_bug_and_only_there(prop, registered):
    planted = registered[prop]
    error = search(prop, planted)
    assert error is not None, f"property {prop!r} did not catch {planted.name}"
    assert planted.name in str(error)
    for other in LETS_THROUGH[prop]:
        assert search(other, planted) is None, f"{planted.name} should break only {prop!r}, but {other!r} failed too"
