"""The simulator's MPI semantics: matching, completion, test(), deadlock reports, hazards, errors."""

import numpy as np
import pytest

from collectives.sim import (
    AlgorithmError,
    CostModel,
    DeadlockError,
    HazardError,
    MessageError,
    PortabilityError,
    run_real,
    simulate,
)
from collectives.sim.payload import SizesPayload
from collectives.sim.scheduler import Simulator
from collectives.sim.symbolic import SymbolicPayload

SEEDS = [None, 1, 2, 3, 4, 5]


def run(algo, p, n=4, seed=None, dtype=np.int64):
    return run_real(algo, [np.full(n, r, dtype=dtype) for r in range(p)], seed=seed, jitter=1.0 if seed else 0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_same_tag_messages_match_in_posting_order(seed):
    """MPI's non-overtaking rule: the k-th send (source, tag) matches the k-th receive posted for it."""

    def algo(t, buf, op):
        if t.rank == 0:
            a, b = t.scratch(2, buf.dtype), t.scratch(2, buf.dtype)
            t.copy(a, buf[0:2])
            t.copy(b, buf[2:4])
            yield t.wait(t.isend(a, 1, 5), t.isend(b, 1, 5))
        else:
            yield t.wait(t.irecv(buf[2:4], 0, 5), t.irecv(buf[0:2], 0, 5))

    out = run_real(algo, [np.array([1, 2, 3, 4]), np.zeros(4, int)], seed=seed, jitter=1.0 if seed else 0.0)
    assert out.buffers[1].tolist() == [3, 4, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_tags_select_messages_whatever_the_posting_order(seed):
    def algo(t, buf, op):
        if t.rank == 0:
            yield t.wait(t.isend(buf[0:1], 1, 1), t.isend(buf[1:2], 1, 2))
        else:
            yield t.wait(t.irecv(buf[1:2], 0, 2), t.irecv(buf[0:1], 0, 1))

    out = run_real(algo, [np.array([10, 20]), np.zeros(2, int)], seed=seed, jitter=1.0 if seed else 0.0)
    assert out.buffers[1].tolist() == [10, 20]


def test_step_test_is_false_until_complete_then_true():
    seen = []

    def algo(t, buf, op):
        if t.rank == 0:
            step = t.recv(buf, 1, 0)  # rank 1 has not sent yet: rank 0 runs first
            seen.append(step.test())
            yield step
            seen.append(step.test())
        else:
            yield t.send(buf, 0, 0)

    run(algo, 2)
    assert seen == [False, True]


def test_clocks_follow_the_alpha_beta_model():
    def algo(t, buf, op):
        if t.rank == 0:
            yield t.send(buf, 1, 0)
        else:
            yield t.recv(buf, 0, 0)
            t.reduce(op, buf, buf[:])

    res = simulate(algo, 2, 1000 * 4, model=CostModel.alpha_beta_gamma(1e-6, 1e-9, 1e-10))
    assert res.finish[0] == pytest.approx(1e-6 + 4000e-9)
    assert res.finish[1] == pytest.approx(1e-6 + 4000e-9 + 4000e-10)


def test_loggp_charges_overhead_at_both_ends_and_releases_the_sender_early():
    def algo(t, buf, op):
        if t.rank == 0:
            yield t.send(buf, 1, 0)
        else:
            yield t.recv(buf, 0, 0)

    m = CostModel.loggp(L=5e-6, o=1e-6, g=2e-6, G=1e-9)
    res = simulate(algo, 2, 8000, model=m)
    assert res.finish[1] == pytest.approx(1e-6 + 8000e-9 + 5e-6 + 1e-6)  # o + mG + L + o
    assert res.finish[0] == pytest.approx(1e-6 + 8000e-9)  # the sender is free once injected


def test_one_port_model_serialises_a_ranks_messages():
    def fan_out(t, buf, op):
        if t.rank == 0:
            yield t.wait(*[t.isend(buf, d, 0) for d in range(1, t.size)])
        else:
            yield t.recv(buf, 0, 0)

    multi = simulate(fan_out, 4, 1000, model=CostModel.alpha_beta_gamma(1e-6, 1e-9))
    one = simulate(fan_out, 4, 1000, model=CostModel.textbook(1e-6, 1e-9))
    assert multi.time == pytest.approx(1e-6 + 1000e-9)
    assert one.time == pytest.approx(3 * (1e-6 + 1000e-9))


def test_deadlock_report_names_each_blocked_ranks_wait_and_the_cycle():
    def unsafe(t, buf, op):  # everyone sends first: relies on buffering, which MPI does not promise
        p, r = t.size, t.rank
        yield t.send(buf, (r + 1) % p, 7)
        yield t.recv(buf, (r - 1) % p, 7)

    with pytest.raises(DeadlockError) as e:
        run(unsafe, 4)
    text = str(e.value)
    assert "4 of 4 ranks blocked" in text
    assert "rank 3 waits in send to rank 0, tag 7" in text
    assert "wait cycle: rank 0 -> rank 1 -> rank 2 -> rank 3 -> rank 0" in text
    assert e.value.waits[2] == ["send to rank 3, tag 7 (32 B)"]


def test_deadlock_report_points_at_a_tag_mismatch():
    def algo(t, buf, op):
        if t.rank == 0:
            yield t.recv(buf, 1, 7)
        else:
            yield t.wait(t.isend(buf, 0, 8))

    with pytest.raises(DeadlockError) as e:
        run(algo, 2)
    assert "rank 0 waits in recv from rank 1, tag 7 (rank 1 has sent it tag(s) [8] instead)" in str(e.value)
    assert "rank 1 waits in send to rank 0, tag 8" in str(e.value)


def test_waiting_for_a_rank_that_returned_is_reported():
    def algo(t, buf, op):
        if t.rank == 0:
            yield t.recv(buf, 1, 0)

    with pytest.raises(DeadlockError, match=r"rank 0 waits in recv from rank 1, tag 0 \(rank 1 has already returned\)"):
        run(algo, 2)


def test_unwaited_and_unmatched_requests_are_errors():
    def forgets_to_wait(t, buf, op):
        if t.rank == 0:
            t.isend(buf, 1, 0)
        else:
            yield t.recv(buf, 0, 0)

    with pytest.raises(MessageError, match="rank 0 returned with 1 request"):
        run(forgets_to_wait, 2)

    def never_received(t, buf, op):
        if t.rank == 0:
            req = t.isend(buf, 1, 3)
            yield t.wait()
            del req
        return

    with pytest.raises(MessageError, match=r"never waited for|never received"):
        run(never_received, 2)


def test_truncation_and_bad_peers_are_reported():
    def truncates(t, buf, op):
        if t.rank == 0:
            yield t.send(buf, 1, 0)
        else:
            yield t.recv(buf[:2], 0, 0)

    with pytest.raises(MessageError, match="MPI_ERR_TRUNCATE"):
        run(truncates, 2)

    def bad_peer(t, buf, op):
        yield t.send(buf, t.size, 0)

    with pytest.raises(MessageError, match=r"rank 0: t.isend to rank 2, but ranks are 0..1"):
        run(bad_peer, 2)


@pytest.mark.parametrize("mode", ["real", "symbolic"])
def test_hazards_writing_a_buffer_while_its_send_is_in_flight(mode):
    def early_write(t, buf, op):
        other = 1 - t.rank
        incoming = t.scratch(buf.size, buf.dtype)
        send = t.isend(buf, other, 0)
        yield t.wait(t.irecv(incoming, other, 0))
        t.reduce(op, buf, incoming)  # the send of buf has not been waited for yet
        yield t.wait(send)

    expected = r"rank \d: t.reduce writes a buffer while its send to rank \d, tag 0 \(\d+ B\) is in flight"
    with pytest.raises(HazardError, match=expected):
        _run_mode(early_write, mode)


@pytest.mark.parametrize("mode", ["real", "symbolic"])
def test_hazards_two_receives_into_one_buffer(mode):
    def reuse(t, buf, op):
        if t.rank == 0:
            yield t.wait(t.isend(buf, 1, 0), t.isend(buf, 1, 1))
        else:
            incoming = t.scratch(buf.size, buf.dtype)
            yield t.wait(t.irecv(incoming, 0, 0), t.irecv(incoming, 0, 1))

    with pytest.raises(HazardError, match="overlaps its pending recv from rank 0, tag 0"):
        _run_mode(reuse, mode)


def _run_mode(algo, mode, p=2, n=4):
    if mode == "real":
        return run(algo, p, n)
    payload = SymbolicPayload(p)
    sim = Simulator(p, payload)
    return sim.run(algo, [payload.input(r, n, np.float32) for r in range(p)], None)


def test_touching_data_directly_is_a_portability_error_without_payload():
    def cheats(t, buf, op):
        buf[0:1] += 1
        yield t.wait()

    with pytest.raises(PortabilityError, match="rank 0: the algorithm touched buffer data directly"):
        simulate(cheats, 2, 16)
    with pytest.raises(PortabilityError, match="arithmetic or assignment on a buffer"):
        _run_mode(cheats, "symbolic")


def test_yielding_something_else_and_raising_are_reported_with_the_rank():
    def yields_junk(t, buf, op):
        yield 42

    with pytest.raises(PortabilityError, match="rank 0: yielded 42"):
        simulate(yields_junk, 2, 16)

    def raises(t, buf, op):
        if t.rank == 1:
            raise RuntimeError("boom")
        yield t.wait()

    with pytest.raises(AlgorithmError, match="rank 1: the algorithm raised RuntimeError: boom"):
        simulate(raises, 2, 16)


def test_sizes_only_buffers_are_free_and_read_only():
    buf = SizesPayload.buffer(10**12, np.float64)
    assert buf.size == 10**12 and buf.nbytes == 8 * 10**12 and buf[5:10].size == 5
    assert not buf.flags.writeable
