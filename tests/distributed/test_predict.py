"""The planner's communication model: simulator times on an emulated link, buckets, overlap."""

import math

import numpy as np
import pytest

from minidl.distributed import predict

ALPHA, BETA, GAMMA = 50e-6, 8 / 1e9, 1 / 4e9  # 1 Gb/s, 50 us; the cpu device's reduction speed


@pytest.mark.parametrize("p", [2, 4, 8])
def test_ring_on_an_emulated_link_is_the_textbook_closed_form(p):
    n = 4 * 4096
    on = predict.machine(link="1Gbps,50us")
    # 2(p-1) steps of one n/p chunk; p-1 of them reduce it (Thakur, Rabenseifner and Gropp 2005)
    expected = 2 * (p - 1) * (ALPHA + n / p * BETA) + (p - 1) * n / p * GAMMA
    assert predict.allreduce_time(n, p, "ring", on) == pytest.approx(expected, rel=1e-6)


def test_one_rank_or_nothing_to_send_costs_nothing():
    on = predict.machine("ib-edr")
    assert predict.allreduce_time(4096, 1, "ring", on) == 0.0
    assert predict.allreduce_time(0, 8, "ring", on) == 0.0


def test_large_rank_counts_fall_back_to_the_closed_form_and_stay_finite():
    on = predict.machine("ib-edr")
    times = [predict.allreduce_time(1 << 20, p, "rabenseifner", on) for p in (64, 4096)]
    assert all(math.isfinite(t) and t > 0 for t in times)
    assert times[1] > times[0]


def test_unknown_algorithm_is_named():
    with pytest.raises(ValueError, match=r"allreduce: unknown algorithm 'bogus'; expected one of \['ring'"):
        predict.allreduce_time(1024, 4, "bogus", predict.machine("ib-edr"))


def test_trainer_buckets_follow_the_caps():
    mib = 2**20
    # reverse registration order: the last parameter goes first, and the first bucket's cap is 1 MiB
    sizes = [3 * mib, mib // 2, mib // 2, mib // 4]
    assert predict.trainer_buckets(sizes, bucket_mb=2.0, first_bucket_mb=1.0) == [
        mib // 4 + mib // 2,
        mib // 2,
        3 * mib,
    ]


def test_overlap_hides_early_buckets_behind_backward():
    on = predict.machine(link="1Gbps,50us")
    buckets = [1000, 1000]
    t = predict.allreduce_time(1000, 2, "ring", on)
    # backward produces the first bucket halfway; it finishes before backward ends if t < backward/2
    backward = 4 * t
    sync = predict.sync_time(buckets, 2, "ring", on, backward)
    assert sync.exposed == pytest.approx(t)  # only the last bucket, ready when backward ends, is exposed
    assert sync.comm == pytest.approx(2 * t)
    slow = predict.sync_time(buckets, 2, "ring", on, backward=t)  # first bucket ready at t/2, done 1.5t
    assert slow.exposed == pytest.approx(1.5 * t)
    off = predict.sync_time(buckets, 2, "ring", on, backward, overlap=False)
    assert off.exposed == pytest.approx(2 * t)


def test_one_rank_exposes_no_communication_whatever_the_bucket_sizes():
    # with nothing to send, the step waits for nothing: exactly zero, not a rounding residue of
    # backward x (sum of bucket fractions) that can land 1 ulp past backward
    rng = np.random.default_rng(1)
    on = predict.machine("ib-edr")
    for _ in range(300):
        buckets = [int(b) for b in rng.integers(1, 10**7, size=rng.integers(1, 9))]
        assert predict.sync_time(buckets, 1, "ring", on, float(rng.random()) * 0.1).exposed == 0.0
