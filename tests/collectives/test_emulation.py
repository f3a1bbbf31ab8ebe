"""Link emulation: stretched steps keep results and last long enough (parsing links: test_link.py)."""

import time
from pathlib import Path

import numpy as np
import pytest
from mpi_launch import run_mpi

from collectives.algorithms.ring import ring_allreduce
from collectives.emulation import EmulatedLinkTransport, Link
from collectives.ops import SUM
from collectives.transport import Step, Transport


class _Loopback(Transport):
    """One rank talking to itself: enough to drive a transport wrapper without MPI."""

    rank, size = 0, 1

    class _Done(Step):
        def wait(self):
            pass

        def test(self):
            return True

    def isend(self, buf, dest, tag):
        return ("send", buf)

    def irecv(self, buf, source, tag):
        return ("recv", buf)

    def wait(self, *requests):
        return self._Done()


def test_stretched_steps_last_at_least_the_model_time():
    link = Link(latency=2e-3, bandwidth=1e6)  # 2 ms + 1 us per byte
    t = EmulatedLinkTransport(_Loopback(), link)
    buf = np.zeros(250, np.float64)  # 2000 bytes -> 2 ms + 2 ms

    def two_steps():  # a step's clock starts when it is posted, as in an algorithm generator
        yield t.sendrecv(buf, 0, buf, 0, tag=0)
        yield t.wait(t.isend(buf, 0, 1), t.irecv(buf[:10], 0, 1))

    start = time.perf_counter()
    t.run(two_steps())
    assert time.perf_counter() - start >= 2 * link.message_time(2000) - 1e-6


def test_single_rank_allreduce_through_emulation_is_unchanged():
    t = EmulatedLinkTransport(_Loopback(), Link(1e-6, 1e9))
    buf = np.arange(7.0)
    t.run(ring_allreduce(t, buf, SUM))
    np.testing.assert_array_equal(buf, np.arange(7.0))


@pytest.mark.mpi
def test_allreduce_over_an_emulated_link_on_two_ranks():
    """Real ranks: the result is numpy's, the time at least the model's, and the transport is made once."""
    proc = run_mpi(2, [str(Path(__file__).with_name("mpi_link_check.py"))], timeout=60)
    assert "2 ranks: link emulation ok" in proc.stdout
