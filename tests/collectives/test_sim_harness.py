"""The harness on every registered algorithm, and on planted bugs it must catch."""

import pytest

from collectives import ALGORITHMS
from collectives.algorithms.chunking import chunk_bounds
from collectives.sim import (
    DeadlockError,
    HazardError,
    WrongResultError,
    check,
    check_real,
    check_symbolic,
    simulate,
)

SMALL_RANKS = (1, 2, 3, 4, 5, 8)
SMALL_SYMBOLIC = (1, 2, 3, 4, 5, 6, 7, 8, 16, 33)


def textbook_ring(t, buf, op, *, chunk_shift=0, allgather_steps=None, reduce_twice=False):
    """The lecture's ring allreduce, with switches that plant the classic bugs."""
    p, r = t.size, t.rank
    if p == 1:
        return
    b = chunk_bounds(buf.size, p)

    def chunk(i):
        i %= p
        return buf[b[i] : b[i + 1]]

    right, left = (r + 1) % p, (r - 1) % p
    incoming = t.scratch(b[1] - b[0], buf.dtype)
    for s in range(p - 1):
        into = chunk(r - s - 1 + chunk_shift)
        yield t.sendrecv(chunk(r - s), right, incoming[: into.size], left, s)
        t.reduce(op, into, incoming[: into.size])
        if reduce_twice and s == 0:
            t.reduce(op, into, incoming[: into.size])
    for s in range(p - 1 if allgather_steps is None else allgather_steps(p)):
        yield t.sendrecv(chunk(r - s + 1), right, chunk(r - s), left, p + s)


def wrong_chunk(t, buf, op):
    yield from textbook_ring(t, buf, op, chunk_shift=1)


def missing_step(t, buf, op):
    yield from textbook_ring(t, buf, op, allgather_steps=lambda p: p - 2)


def double_count(t, buf, op):
    yield from textbook_ring(t, buf, op, reduce_twice=True)


def send_then_receive(t, buf, op):
    """The deadlocking order: both halves of an exchange as blocking calls, sends first."""
    p, r = t.size, t.rank
    incoming = t.scratch(buf.size, buf.dtype)
    for k in range(1, p):
        yield t.send(buf, (r + k) % p, k)
        yield t.recv(incoming, (r - k) % p, k)
        t.reduce(op, buf, incoming)


def reuses_scratch_too_early(t, buf, op):
    """Posts the next receive into the scratch block that is still being reduced from."""
    p, r = t.size, t.rank
    if p == 1:
        return
    b = chunk_bounds(buf.size, p)
    right, left = (r + 1) % p, (r - 1) % p
    incoming = t.scratch(b[1] - b[0], buf.dtype)
    chunk = lambda i: buf[b[i % p] : b[i % p + 1]]  # noqa: E731
    pending = t.irecv(incoming[: chunk(r - 1).size], left, 0)
    for s in range(p - 1):
        into = chunk(r - s - 1)
        yield t.wait(t.isend(chunk(r - s), right, s), pending)
        if s + 1 < p - 1:
            pending = t.irecv(incoming[: chunk(r - s - 2).size], left, s + 1)  # too early
        t.reduce(op, into, incoming[: into.size])
    for s in range(p - 1):
        yield t.sendrecv(chunk(r - s + 1), right, chunk(r - s), left, p + s)


def test_textbook_ring_itself_passes():
    for p in (1, 2, 3, 4, 7):
        for n in (0, 1, p + 1, 50):
            check_real(textbook_ring, p, n, seed=3)
            check_symbolic(textbook_ring, p, n, seed=3)


@pytest.mark.parametrize("p", [3, 4, 8])
def test_planted_wrong_chunk_index_is_caught(p):
    with pytest.raises(WrongResultError, match=r"rank \d+ is wrong"):
        check_real(wrong_chunk, p, 3 * p)
    with pytest.raises(WrongResultError, match=r"(?s)symbolic check failed.*missing"):
        check_symbolic(wrong_chunk, p, 3 * p)


@pytest.mark.parametrize("p", [3, 4, 8])
def test_planted_missing_step_is_caught_with_the_missing_ranks(p):
    with pytest.raises(WrongResultError):
        check_real(missing_step, p, 2 * p + 1)
    missing_one = rf"hold the contributions of {p - 1} of {p} ranks \(missing \{{\d+\}}\)"
    with pytest.raises(WrongResultError, match=missing_one):
        check_symbolic(missing_step, p, 2 * p + 1)


def test_planted_double_count_is_caught_symbolically():
    with pytest.raises(WrongResultError, match=r"would count rank\(s\) \{\d+\} twice in buf\[\d+:\d+\]"):
        check_symbolic(double_count, 4, 8)


def test_planted_deadlocking_order_is_caught_with_every_wait():
    with pytest.raises(DeadlockError) as e:
        check_symbolic(send_then_receive, 3, 6)
    text = str(e.value)
    for r in range(3):
        assert f"rank {r} waits in send to rank {(r + 1) % 3}, tag 1" in text


@pytest.mark.parametrize("seed", [None, 1])
def test_planted_early_buffer_reuse_is_caught(seed):
    with pytest.raises(HazardError, match=r"overlaps its pending recv|reads a buffer that its recv"):
        check_real(reuses_scratch_too_early, 4, 8, seed=seed)


def test_harness_reports_planted_bug_as_failed():
    report = check(missing_step, ranks=(2, 3), large_ranks=(), symbolic_ranks=(3,), dtypes=("int32",), seeds=1)
    assert not report.ok
    assert "real data       FAIL" in str(report) and "symbolic        FAIL" in str(report)
    with pytest.raises(AssertionError):
        report.raise_if_failed()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_registered_algorithm_passes_real_and_symbolic_checks(name):
    report = check(
        name,
        ranks=SMALL_RANKS,
        large_ranks=(),
        symbolic_ranks=SMALL_SYMBOLIC,
        dtypes=("int32", "float64", "complex128", "bool", "uint8"),
        cost=False,
    )
    assert report.ok, str(report)


def test_real_data_check_at_256_ranks():
    result = check_real("ring", 256, 1000, seed=1)
    assert result.p == 256 and result.messages == 2 * 255 * 256


@pytest.mark.parametrize("name,p", [("tree", 2048), ("double_tree", 1024), ("recursive_doubling", 1000)])
def test_symbolic_check_scales_to_thousands_of_ranks(name, p):
    result = check_symbolic(name, p, p + 3)
    assert result.p == p


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_counters_match_the_declared_cost(name):
    spec = ALGORITHMS[name]
    for p in (2, 3, 4, 5, 8, 16):
        for nbytes in (1024, 4 * ((1 << 20) + 3), 32 << 20):
            declared = spec.cost(p, nbytes, 4)
            busiest = simulate(name, p, nbytes).busiest()
            assert busiest["messages_sent"] == declared.messages_per_rank, (p, nbytes)
            assert busiest["bytes_sent"] == pytest.approx(declared.bytes_sent_per_rank, rel=1e-12), (p, nbytes)


def test_bandwidth_optimality_verdict():
    text = {name: str(check(name, ranks=(), large_ranks=(), symbolic_ranks=())) for name in ("ring", "naive")}
    assert "bandwidth-optimal" in text["ring"]
    assert "8.00x the bandwidth lower bound" in text["naive"]
