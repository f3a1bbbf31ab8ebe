"""The fast engine (recorded schedule, compiled replay) against the reference scheduler: the same numbers.

The oracle is :class:`collectives.sim.scheduler.Simulator` driving the generators, which the rest
of the suite checks against closed forms and hand-computed times; here every registered algorithm
and a set of hand-written communication patterns run on both engines over every cost-model kind
(textbook one-port, multi-port, LogGP's NIC with o and g, measured curves with a per-call cost,
rendezvous) and every topology (pairwise links and routed, contended ones), and finish times,
counters, link statistics and timelines must be equal exactly, not approximately.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from collectives.algorithms import ALGORITHMS
from collectives.link import Link
from collectives.sim import CostModel, DeadlockError, MessageError, PortabilityError, simulate
from collectives.sim.topology import make_topology

LINK = Link(3e-7, 12.5e9)
INTRA = Link(2e-7, 300e9)
CURVES = CostModel.textbook(2e-6, 1 / 8e9, 1 / 4e9, 1 / 9e9).replace(
    call_overhead=3e-7,
    message_curve=((0, 2e-6), (4096, 3e-6), (1 << 20, 9e-5), (8 << 20, 8e-4)),
    reduce_curve=((1024, 4e-7), (1 << 20, 2e-4), (16 << 20, 4e-3)),
    copy_curve=((1024, 2e-7), (1 << 20, 1e-4), (16 << 20, 2e-3)),
    name="calibrated",
)
MODELS = {
    "textbook": CostModel.textbook(1e-6, 1 / 10e9, 1 / 5e9, 1 / 8e9),
    "abg": CostModel.alpha_beta_gamma(1e-6, 1 / 10e9, 1 / 5e9),
    "loggp": CostModel.loggp(L=1e-6, o=3e-7, g=5e-7, G=1 / 10e9, gamma=1 / 5e9),
    "rendezvous": CostModel.alpha_beta_gamma(1e-6, 1 / 10e9, 1 / 5e9).replace(eager_limit=4096),
    "curves": CURVES,
}
TOPOLOGIES = ["default", "full", "switch", "ring", "torus", "fattree:k=2,oversub=2", "hier:gpus=2,nics=1",
              "torus:placement=random:3"]  # fmt: skip


def _topology(spec: str, p: int):
    if spec == "default":
        return None
    if spec.startswith("torus") and p < 4:
        spec = spec.replace("torus", "ring")
    return make_topology(spec, p, LINK, INTRA)


def assert_same(algorithm, p: int, nbytes: int, model: CostModel, topology_spec: str, timeline: bool = False):
    """Both engines on one case: everything in the result must be equal."""
    ref = simulate(algorithm, p, nbytes, model=model, topology=_topology(topology_spec, p), engine="reference",
                   timeline=timeline)  # fmt: skip
    fast = simulate(algorithm, p, nbytes, model=model, topology=_topology(topology_spec, p), engine="fast",
                    timeline=timeline)  # fmt: skip
    case = f"{getattr(algorithm, '__name__', algorithm)} p={p} {nbytes} B {model.name} {topology_spec}"
    assert fast.engine == "fast", case
    assert ref.engine == "reference", case
    assert fast.finish == ref.finish, case
    assert fast.time == ref.time, case
    for field in ("sent_msgs", "sent_bytes", "recv_msgs", "recv_bytes", "reduce_bytes", "reduce_calls", "copy_bytes"):
        assert getattr(fast, field) == getattr(ref, field), (case, field)
    assert fast.steps == ref.steps, case
    assert fast.links == ref.links, case
    assert fast.topology == ref.topology and fast.model == ref.model, case
    assert fast.events == ref.events, case


# Every algorithm meets every model and every topology at least once; sizes cross the segment
# sizes (one message per chunk, several) and include empty and odd ones.
CASES = [
    (name, p, nbytes, model, topo)
    for i, (name, (p, nbytes)) in enumerate(
        itertools.product(sorted(ALGORITHMS), [(1, 64), (2, 0), (3, 4), (4, 1 << 20), (5, 3 << 20), (8, 4100)])
    )
    for model, topo in [(list(MODELS)[i % len(MODELS)], TOPOLOGIES[i % len(TOPOLOGIES)]),
                        (list(MODELS)[(i + 2) % len(MODELS)], TOPOLOGIES[(i + 3) % len(TOPOLOGIES)])]
]  # fmt: skip


@pytest.mark.parametrize(("name", "p", "nbytes", "model", "topo"), CASES)
def test_registered_algorithms_same_on_both_engines(name, p, nbytes, model, topo):
    assert_same(name, p, nbytes, MODELS[model], topo, timeline=p <= 4)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("topo", TOPOLOGIES)
def test_larger_runs_same_on_both_engines(model, topo):
    """16 ranks with segmented chunks: many messages in flight on contended links."""
    for name in ("ring", "double_tree", "rabenseifner"):
        assert_same(name, 16, (2 << 20) + 64, MODELS[model], topo)


# Hand-written patterns the registered algorithms do not use: explicit isend/irecv/wait in other
# orders, several messages with one tag, steps yielded after later ones were made, copies,
# empty waits, blocking send/recv, messages to oneself.
def fan_in(t, buf, op):
    if t.rank == 0:
        got = [t.scratch(buf.size, buf.dtype) for _ in range(t.size - 1)]
        reqs = [t.irecv(g, r, 7) for r, g in zip(range(t.size - 1, 0, -1), got)]
        yield t.wait(*reqs)
        for g in got:
            t.reduce(op, buf, g)
    else:
        yield t.send(buf, 0, 7)


def same_tag_stream(t, buf, op):
    half = buf.size // 2
    if t.rank % 2 == 0 and t.rank + 1 < t.size:
        first = t.isend(buf[:half], t.rank + 1, 3)
        second = t.isend(buf[half:], t.rank + 1, 3)
        early = t.wait(first)
        late = t.wait(second)
        yield late  # the later step first: the other is already complete or completes meanwhile
        yield early
    elif t.rank % 2 == 1:
        tmp = t.scratch(buf.size - half, buf.dtype)
        yield t.recv(buf[:half], t.rank - 1, 3)
        yield t.wait()
        yield t.recv(tmp, t.rank - 1, 3)
        t.copy(buf[half:], tmp)


def to_self_and_around(t, buf, op):
    r, p = t.rank, t.size
    inbox = t.scratch(buf.size, buf.dtype)
    yield t.wait(t.irecv(inbox, r, 1), t.isend(buf, r, 1))
    t.reduce(op, buf, inbox)
    for k in range(1, p):
        yield t.sendrecv(buf, (r + k) % p, inbox, (r - k) % p, 10 + k)
        t.copy(buf, inbox)


def huge_tags(t, buf, op):
    """Tags too large for the recording's one-integer matching keys (p * p * tags >= 2**62)."""
    r, p = t.rank, t.size
    inbox, other = t.scratch(buf.size, buf.dtype), t.scratch(buf.size, buf.dtype)
    for k in range(1, p):
        left, right, big = (r - k) % p, (r + k) % p, (1 << 62) - k  # a different large tag per round
        posted = (t.irecv(inbox, left, big), t.irecv(other, left, 7), t.isend(buf, right, big), t.isend(buf, right, 7))
        yield t.wait(*posted)
        t.reduce(op, inbox, other)


def growing_ranks(t, buf, op):
    """Each rank posts more than the one before it and rank 0 nothing, so the recording's arrays,
    sized from the ranks parsed so far, must grow again and again."""
    r, p = t.rank, t.size
    inbox = t.scratch(buf.size, buf.dtype)
    sends = [t.isend(buf[: k + 1], r + 1, k) for k in range(r)] if r + 1 < p else []
    for k in range(r - 1):
        yield t.wait(t.irecv(inbox[: k + 1], r - 1, k))
        t.reduce(op, buf[: k + 1], inbox[: k + 1])
    yield t.wait(*sends)


@pytest.mark.parametrize("pattern", [fan_in, same_tag_stream, to_self_and_around, huge_tags, growing_ranks])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_hand_written_patterns_same_on_both_engines(pattern, model):
    for p, topo in ((2, "full"), (5, "switch"), (6, "default"), (7, "ring")):
        assert_same(pattern, p, 4096 + 8, MODELS[model], topo, timeline=True)


def test_errors_are_the_reference_schedulers():
    """A broken algorithm cannot be replayed; the reference runs and reports it in full."""

    def both_send_first(t, buf, op):
        other = 1 - t.rank
        yield t.send(buf, other, 0)
        yield t.recv(buf, other, 0)

    def never_received(t, buf, op):
        if t.rank == 0:
            yield t.send(buf, 1, 0)

    with pytest.raises(DeadlockError, match="wait cycle"):
        simulate(both_send_first, 2, 64)

    def wrong_tag(t, buf, op):
        if t.rank == 0:
            yield t.send(buf, 1, 0)
        else:
            yield t.recv(buf, 0, 1)

    def truncates(t, buf, op):
        if t.rank == 0:
            yield t.send(buf, 1, 0)
        else:
            yield t.recv(buf[:1], 0, 0)

    with pytest.raises(DeadlockError, match="rank 1 has already returned"):
        simulate(never_received, 2, 64)
    with pytest.raises(DeadlockError, match=r"has sent it tag\(s\) \[0\] instead"):
        simulate(wrong_tag, 2, 64)
    with pytest.raises(MessageError, match="MPI_ERR_TRUNCATE"):
        simulate(truncates, 2, 64)

    def yields_a_request(t, buf, op):  # request 0 of rank 0 looks like "the step just made" to a careless check
        other = 1 - t.rank
        req = t.isend(buf, other, 0)
        yield req
        yield t.wait(req, t.irecv(t.scratch(buf.size, buf.dtype), other, 0))

    def waits_twice(t, buf, op):
        other = 1 - t.rank
        req = t.isend(buf, other, 0)
        yield t.wait(req, t.irecv(t.scratch(buf.size, buf.dtype), other, 0))
        yield t.wait(req)

    with pytest.raises(PortabilityError, match="must yield steps"):
        simulate(yields_a_request, 2, 64)
    with pytest.raises(MessageError, match="waited for twice"):
        simulate(waits_twice, 2, 64)
    with pytest.raises(DeadlockError):
        simulate(both_send_first, 2, 64, engine="fast")


def test_engine_is_reported_and_a_seed_means_the_reference():
    fast = simulate("ring", 4, 1 << 16)
    assert fast.engine == "fast" and "fast engine" in fast.summary()
    seeded = simulate("ring", 4, 1 << 16, seed=3)
    assert seeded.engine.startswith("reference") and "seed" in seeded.engine
    with pytest.raises(ValueError, match="seed"):
        simulate("ring", 4, 1 << 16, seed=3, engine="fast")
    with pytest.raises(ValueError, match="engine must be one of"):
        simulate("ring", 4, 1 << 16, engine="turbo")


def test_record_refuses_what_it_cannot_replay():
    """Things the schedule cannot express fall back to the reference (and say why)."""

    def polls(t, buf, op):
        step = t.sendrecv(buf, (t.rank + 1) % t.size, buf[:0], (t.rank - 1) % t.size, 0)
        step.test()  # a recorded step has no state to poll
        yield step

    def float_tag(t, buf, op):
        yield t.sendrecv(buf, (t.rank + 1) % t.size, t.scratch(buf.size, buf.dtype), (t.rank - 1) % t.size, 1.5)

    # the reference runs it (it may raise; what matters is that the fast engine does not pretend)
    for algo in (polls, float_tag):
        try:
            result = simulate(algo, 3, 64)
        except Exception:
            continue
        assert result.engine.startswith("reference (fast engine not used:"), result.engine


def test_counters_exact_beyond_float_rounding():
    """Per-rank byte counters are integers summed exactly (no float rounding on big runs)."""
    n = (1 << 40) + 8  # 1 TiB + 8 B per rank: one message each way
    ref = simulate("recursive_doubling", 2, n, model=MODELS["abg"], dtype=np.int64, engine="reference")
    fast = simulate("recursive_doubling", 2, n, model=MODELS["abg"], dtype=np.int64, engine="fast")
    assert fast.sent_bytes == ref.sent_bytes and fast.time == ref.time
    assert sum(fast.sent_bytes) == sum(ref.sent_bytes) > 1 << 40


# The recording's own checks (collectives.sim.tape.parse): each misuse is refused with its reason,
# and simulate then runs the reference scheduler instead.
def _stashing_other_ranks_handle(kind):
    """An algorithm where rank 1 yields (or waits for) a handle rank 0's transport made."""
    stash = {}

    def algo(t, buf, op):
        other = 1 - t.rank
        if t.rank == 0:
            stash["step"] = step = t.sendrecv(buf, other, t.scratch(buf.size, buf.dtype), other, 0)
            stash["request"] = t.isend(buf, other, 1)
            yield step
            yield t.wait(stash["request"])
        else:
            yield t.sendrecv(buf, other, t.scratch(buf.size, buf.dtype), other, 0)
            got = t.irecv(t.scratch(buf.size, buf.dtype), other, 1)
            if kind == "step":
                yield stash["step"]
                yield t.wait(got)
            else:
                yield t.wait(got, stash["request"])

    return algo


def _yields(value):
    def algo(t, buf, op):
        yield t.sendrecv(buf, 1 - t.rank, t.scratch(buf.size, buf.dtype), 1 - t.rank, 0)
        yield value

    return algo


def _waits_twice(t, buf, op):
    req = t.isend(buf, 1 - t.rank, 0)
    yield t.wait(req, t.irecv(t.scratch(buf.size, buf.dtype), 1 - t.rank, 0))
    yield t.wait(req)


def _never_yields_its_step(t, buf, op):
    t.sendrecv(buf, 1 - t.rank, t.scratch(buf.size, buf.dtype), 1 - t.rank, 0)
    yield t.wait()


def _peer(dest):
    def algo(t, buf, op):
        yield t.sendrecv(buf, dest, t.scratch(buf.size, buf.dtype), 1 - t.rank, 0)

    return algo


@pytest.mark.parametrize(
    ("algo", "reason"),
    [
        (_yields(None), "not an integer"),
        (_yields(2.0), "not an integer"),
        (_yields(0), "not a step of its own transport"),  # request handle 0 / a small number
        (_yields(7), "not a step of its own transport"),
        (_yields(-40), "not one its own transport made"),  # a step handle nobody made yet
        (_stashing_other_ranks_handle("step"), "not one its own transport made"),
        (_stashing_other_ranks_handle("request"), "other than a request it posted"),
        (_waits_twice, "waited for twice or never"),
        (_never_yields_its_step, "a step with requests never"),
        (_peer(2), "outside 0..p-1"),
        (_peer(-1), "outside 0..p-1"),
        (_peer(1.0), "not an integer"),
    ],
)
def test_recording_refuses_handles_that_are_not_its_own(algo, reason):
    from collectives.ops import get_op
    from collectives.sim.record import NotRecordable, record

    with pytest.raises(NotRecordable, match=reason):
        record(algo, 2, 16, np.float32, get_op("sum"))
    try:
        result = simulate(algo, 2, 64)
    except Exception:  # the reference's own report of the bug
        return
    assert result.engine.startswith("reference (fast engine not used:"), result.engine


def test_round_major_order():
    """Records are laid out by (position within the rank, rank); oracle: Python's sort of those pairs."""
    from collectives.sim.replay_loop import round_major

    counts = [3, 0, 5, 1, 5, 2]
    base = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    new_id = round_major(base)
    items = [(k, r, int(base[r]) + k) for r, c in enumerate(counts) for k in range(c)]
    expected = [q for _, _, q in sorted(items)]  # the item at each new position
    assert [expected.index(q) for q in range(len(expected))] == new_id.tolist()


def test_small_pages_restores_numpys_setting_even_when_nested_and_on_errors():
    from collectives.sim.record import small_pages

    core = getattr(np, "_core", None) or np.core
    switch = getattr(core.multiarray, "_set_madvise_hugepage", None)
    if switch is None:
        pytest.skip("this numpy has no huge-page switch")
    before = switch(True)
    try:
        with small_pages():
            assert switch(False) is False  # off inside (reading it means setting it: keep it off)
            with pytest.raises(ValueError), small_pages():
                raise ValueError
            assert switch(False) is False  # the inner block's exit did not switch it back on
        assert switch(True) is True  # on again after the last block
    finally:
        switch(before)
