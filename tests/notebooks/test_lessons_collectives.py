"""collectives.lessons: the ring exercise's check, the cost checks, and run_ranks on real mpiexec."""

import numpy as np
import pytest

from collectives import chunk_bounds, lessons
from notebooks.solutions import s03_collectives as s3
from notebooks.solutions import s04_real_ranks as s4


def fails_with(report, *phrases):
    assert not report.ok, str(report)
    text = str(report)
    for phrase in phrases:
        assert phrase in text, text


def planted_ring(bug):
    """The reference ring with one classic mistake."""

    def ring(t, buf, op):
        p, r = t.size, t.rank
        if p == 1:
            return
        bounds = chunk_bounds(buf.size, p)
        right, left = (r + 1) % p, (r - 1) % p
        incoming = t.scratch(bounds[1] - bounds[0], buf.dtype)
        steps = 2 * (p - 1) - (1 if bug == "missing step" else 0)
        for s in range(steps):
            c, d = (r - s - 1) % p, (r - s - 2) % p
            if bug == "wrong chunk":
                d = c  # reduce into the chunk just sent
            a, b = bounds[d], bounds[d + 1]
            send = buf[bounds[c] : bounds[c + 1]]
            if s < p - 1:
                if bug == "deadlock":
                    yield t.send(send, right, s)  # everyone sends first: nobody is receiving
                    yield t.recv(incoming[: b - a], left, s)
                else:
                    yield t.sendrecv(send, right, incoming[: b - a], left, s)
                if bug == "numpy add":
                    buf[a:b] += incoming[: b - a]
                else:
                    t.reduce(op, buf[a:b], incoming[: b - a])
            else:
                yield t.sendrecv(send, right, buf[a:b], left, s)

    ring.__name__ = bug.replace(" ", "_")
    return ring


def test_reference_ring_passes_and_is_bandwidth_optimal():
    report = lessons.check_ring_allreduce(s3.ring_allreduce, prove_at=128)
    assert report.ok, str(report)
    assert "proved at p=128" in str(report)
    assert "bandwidth-optimal" in str(report)


def test_project_ring_passes_the_same_check():
    from collectives.algorithms.ring import ring_allreduce

    assert lessons.check_ring_allreduce(ring_allreduce, prove_at=64).ok


def test_wrong_chunk_is_located():
    fails_with(
        lessons.check_ring_allreduce(planted_ring("wrong chunk"), prove_at=16),
        "rank 0, step 0 (reduce-scatter): you reduce into chunk 3; the ring reduces into chunk 2",
    )


def test_missing_step_is_named():
    fails_with(
        lessons.check_ring_allreduce(planted_ring("missing step"), prove_at=16),
        "WrongResultError",
        "a step is missing",
    )


def test_deadlock_is_named_with_its_cycle():
    fails_with(
        lessons.check_ring_allreduce(planted_ring("deadlock"), prove_at=16),
        "DeadlockError",
        "wait cycle",
        "t.sendrecv",
    )


def test_computing_on_data_directly_is_named():
    fails_with(lessons.check_ring_allreduce(planted_ring("numpy add"), prove_at=16), "t.reduce")


def test_not_a_generator_is_reported_not_raised():
    fails_with(
        lessons.check_ring_allreduce(lambda t, buf, op: None, prove_at=16), "AlgorithmError", "generator function"
    )


def test_ring_schedule_is_the_lecture_figure():
    # p = 3, rank 0: sends chunks 2, 1 (reduce-scatter), 0, 2 (allgather); receives 1, 0, 2, 1
    assert lessons.ring_schedule(3, 0) == [
        ("send", 2),
        ("reduce", 1),
        ("send", 1),
        ("reduce", 0),
        ("send", 0),
        ("recv", 2),
        ("send", 2),
        ("recv", 1),
    ]


def test_ring_cost_solution_passes_and_missing_one_over_p_fails():
    assert lessons.check_ring_cost(s3.ring_time).ok
    fails_with(lessons.check_ring_cost(lambda p, n, a, b, g: 2 * (p - 1) * a + 2 * n * b + n * g), "bandwidth only")


def test_ring_time_by_hand():
    # p = 4, n = 400 B: 6 alpha + 600 beta + 300 gamma
    assert lessons.ring_time(4, 400, 1.0, 10.0, 100.0) == pytest.approx(6 + 6000 + 30000)


def test_busbw_solution_passes_and_algbw_is_named():
    assert lessons.check_busbw(s4.busbw).ok
    fails_with(lessons.check_busbw(lambda n, t, p: n / t), "algbw")


def test_alpha_beta_fit_solution_passes_and_bandwidth_instead_of_beta_is_named():
    assert lessons.check_alpha_beta_fit(s4.fit_alpha_beta).ok

    def bandwidth(sizes, times):
        a, b = s4.fit_alpha_beta(sizes, times)
        return a, 1 / b

    fails_with(lessons.check_alpha_beta_fit(bandwidth), "looks like a bandwidth")


def test_alpha_beta_fit_through_the_origin_fails():
    def no_intercept(sizes, times):
        return 0.0, float(np.sum(sizes * times) / np.sum(sizes * sizes))

    fails_with(lessons.check_alpha_beta_fit(no_intercept), "intercept")


def test_run_ranks_rejects_a_bad_rank_count():
    with pytest.raises(ValueError, match="positive integer"):
        lessons.run_ranks("pass", 0)


@pytest.mark.mpi
def test_run_ranks_returns_each_ranks_output_and_result():
    code = (
        "from mpi4py import MPI\n"
        "import numpy as np, collectives\n"
        "r = MPI.COMM_WORLD.Get_rank()\n"
        "print('hello from', r)\n"
        "result = collectives.allreduce(np.full(3, r + 1.0)).tolist()\n"
    )
    run = lessons.run_ranks(code, 2, timeout=60)
    assert run.returncode == 0
    assert run.outputs[0].strip() == "hello from 0" and run.outputs[1].strip() == "hello from 1"
    assert run.results == [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]


@pytest.mark.mpi
def test_run_ranks_reports_a_failing_rank():
    code = "from mpi4py import MPI\nif MPI.COMM_WORLD.Get_rank() == 1:\n    raise ValueError('bad input on rank 1')\n"
    with pytest.raises(RuntimeError, match="bad input on rank 1"):
        lessons.run_ranks(code, 2, timeout=60)


@pytest.mark.mpi
def test_run_ranks_times_out_instead_of_hanging():
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    with pytest.raises(TimeoutError, match="started"):
        lessons.run_ranks(code, 2, timeout=3)


@pytest.mark.parametrize(
    "check", [lessons.check_busbw, lessons.check_alpha_beta_fit, lessons.check_ring_cost], ids=lambda c: c.__name__
)
def test_an_unfinished_answer_is_reported_not_raised(check):
    def unfinished(*args):
        raise NotImplementedError("exercise")

    fails_with(check(unfinished), "raised NotImplementedError")
