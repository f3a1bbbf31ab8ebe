"""Link emulation: parsing, and that stretched steps keep results and last long enough."""

import time

import numpy as np
import pytest

from collectives.algorithms.ring import ring_allreduce
from collectives.emulation import EmulatedLinkTransport, Link, parse_link
from collectives.ops import SUM
from collectives.transport import Step, Transport


@pytest.mark.parametrize(
    "spec, latency, bandwidth",
    [
        ("10Gbps,20us", 20e-6, 10e9 / 8),
        ("25GB/s, 2us", 2e-6, 25e9),
        ("100 Mbps,1ms", 1e-3, 100e6 / 8),
        ("1.5Gb/s,500ns", 500e-9, 1.5e9 / 8),
    ],
)
def test_parse_link(spec, latency, bandwidth):
    link = parse_link(spec)
    assert link.latency == pytest.approx(latency)
    assert link.bandwidth == pytest.approx(bandwidth)


@pytest.mark.parametrize("bad", ["fast", "10Gbps", "10Gbps,20", "0Gbps,1us", "10Xbps,1us"])
def test_parse_link_rejects_bad_specs_with_a_hint(bad):
    with pytest.raises(ValueError, match="10Gbps,20us"):
        parse_link(bad)


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


def test_simulator_presets_are_accepted_by_name():
    link = parse_link("ib-hdr")
    assert link.bandwidth == pytest.approx(25e9)
    assert 0 < link.latency < 5e-6
