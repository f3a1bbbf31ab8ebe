"""``--bucket-mb auto``: the choice on synthetic backward timelines whose optimum is worked out by hand."""

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.distributed.autobucket import BackwardProfile, candidate_caps, choose, evaluate, measure_backward

# Four 400-byte parameters; backward produces the last first, one per second, and ends at t = 4.
PROFILE = BackwardProfile(sizes=(400, 400, 400, 400), ready=(4.0, 3.0, 2.0, 1.0), backward=4.0)


def latency_bound(nbytes: int) -> float:
    return 1.0 + 0.5 * nbytes / 400  # 1 s per message, 0.5 s per 400 bytes


def bandwidth_bound(nbytes: int) -> float:
    return nbytes / 400  # no latency, 1 s per 400 bytes


def test_candidates_are_the_sums_of_consecutive_parameters():
    assert candidate_caps([1, 2, 4]) == [1, 2, 3, 4, 6, 7]
    assert candidate_caps([400] * 4) == [400, 800, 1200, 1600]


# By hand, latency-bound (a bucket of k params takes 1 + 0.5k s, starts when its last param is ready and
# the previous bucket is done):
#   cap 400:  4 buckets ready 1,2,3,4, 1.5 s each: done 2.5, 4, 5.5, 7 -> exposed 3
#   cap 800:  2 buckets ready 2,4, 2 s each: done 4, 6 -> exposed 2   (the optimum)
#   cap 1200: 3 params ready 3 (2.5 s) then 1 ready 4 (1.5 s): done 5.5, 7 -> exposed 3
#   cap 1600: 1 bucket ready 4, 3 s -> exposed 3
# Bandwidth-bound (k params take k s): cap 400 done 2,3,4,5 -> exposed 1 (the optimum); cap 800 -> 2;
#   cap 1200 -> 3 + 1 ... done 6, 7 -> 3; cap 1600 -> 4.
@pytest.mark.parametrize(
    "cost, expected",
    [
        (latency_bound, {400: 3.0, 800: 2.0, 1200: 3.0, 1600: 3.0}),
        (bandwidth_bound, {400: 1.0, 800: 2.0, 1200: 3.0, 1600: 4.0}),
    ],
)
def test_each_cap_is_laid_over_the_backward_as_ddp_launches_it(cost, expected):
    for cap, exposed in expected.items():
        plan = evaluate(PROFILE, cap, cost, first_cap_bytes=cap)
        assert plan.exposed == pytest.approx(exposed), cap
    best = min(expected, key=expected.get)
    assert choose(PROFILE, cost, first_cap_bytes=1 << 20).cap_bytes == best


def test_the_latency_bound_optimum_in_detail():
    plan = choose(PROFILE, latency_bound, first_cap_bytes=1 << 20)
    assert plan.buckets == (800, 800)
    assert plan.launch == (2.0, 4.0)
    assert plan.seconds == (2.0, 2.0)
    assert plan.comm == 4.0 and plan.exposed == 2.0 and plan.overlap == pytest.approx(0.5)


def test_a_small_first_bucket_changes_the_plan_as_in_ddp():
    # first bucket capped at 400: [p3] ready 1 done 2.5; [p2, p1, p0] ready 4, 2.5 s -> done 6.5
    plan = evaluate(PROFILE, 1600, latency_bound, first_cap_bytes=400)
    assert plan.buckets == (400, 1200) and plan.exposed == pytest.approx(2.5)


def test_without_overlap_everything_waits_for_backward_and_one_bucket_wins():
    plan = choose(PROFILE, latency_bound, first_cap_bytes=1 << 20, overlap=False)
    assert plan.buckets == (1600,) and plan.exposed == pytest.approx(3.0)
    assert evaluate(PROFILE, 400, latency_bound, 400, overlap=False).exposed == pytest.approx(6.0)


def test_exposed_times_within_the_tolerance_count_as_equal_and_fewer_messages_win():
    # gradients late in backward (3.7, 3.8, 3.9, 3.95 of 4 s), messages cost 0.001 s + 0.1 s per 400 bytes:
    #   cap 400:  ready 3.7, 3.8, 3.9, 3.95, 0.101 s each: done 3.801, 3.902, 4.003, 4.104 -> exposed 0.104, comm 0.404
    #   cap 800:  ready 3.8 (0.201 s) -> 4.001; ready 3.95 -> 4.202: exposed 0.202, comm 0.402
    #   cap 1200: ready 3.9 (0.301 s) -> 4.201; then 0.101 -> 4.302: exposed 0.302, comm 0.402
    #   cap 1600: ready 3.95 + 0.401 -> exposed 0.351, comm 0.401
    late = BackwardProfile((400,) * 4, (3.95, 3.9, 3.8, 3.7), 4.0)

    def cost(n):
        return 0.001 + 0.1 * n / 400

    assert choose(late, cost, tolerance=0.0).cap_bytes == 400
    # within 5% of 4 s = 0.2 s of the least (0.104): 400 and 800; 800 sends less
    assert choose(late, cost, tolerance=0.05).cap_bytes == 800
    # within 0.3 s: every plan; 1600 sends least
    assert choose(late, cost, tolerance=0.075).cap_bytes == 1600


def test_ties_go_to_less_communication_then_to_the_larger_cap():
    # everything ready at once and free communication: all caps tie at zero
    flat = BackwardProfile((100, 100), (1.0, 1.0), 1.0)
    assert choose(flat, lambda n: 0.0).cap_bytes == 200
    # communication long after backward ends: exposed grows with the messages, one bucket wins
    assert choose(flat, lambda n: 1.0 + n).buckets == (200,)


def test_the_spare_element_rides_on_the_last_bucket():
    plan = evaluate(PROFILE, 800, latency_bound, 800, extra_last_bytes=4)
    assert plan.buckets == (800, 804)


def test_a_profile_with_mismatched_fields_is_refused():
    with pytest.raises(ValueError, match="2 sizes, 1 ready times"):
        BackwardProfile((1, 2), (0.0,), 1.0)
    with pytest.raises(ValueError, match="no parameters"):
        BackwardProfile((), (), 1.0)


def test_measuring_backward_times_every_gradient_and_leaves_the_model_as_it_was():
    minidl.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)
    )
    x = minidl.Tensor(np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32))
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    profile = measure_backward(model, lambda: (model(x) ** 2).mean(), repeats=3)
    names = [n for n, _ in model.named_parameters()]
    assert profile.sizes == tuple(p.data.nbytes for p in model.parameters())
    assert all(0.0 <= t <= profile.backward for t in profile.ready)
    ready = dict(zip(names, profile.ready))
    assert ready["5.weight"] < ready["3.weight"] < ready["0.weight"]  # backward runs last layer first
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # BatchNorm's running statistics restored


def test_the_chosen_cap_gives_ddp_exactly_the_predicted_buckets():
    from minidl.distributed import DistributedDataParallel

    minidl.manual_seed(1)
    model = nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 5))
    sizes = tuple(p.data.nbytes for p in model.parameters())
    profile = BackwardProfile(sizes, tuple(np.linspace(1.0, 0.1, len(sizes))), 1.0)  # last layer first
    # a cost that favours several buckets: cheap messages, expensive bytes
    plan = choose(profile, lambda n: 1e-9 + n * 1e-4, first_cap_bytes=1 << 20, extra_last_bytes=4)
    assert len(plan.buckets) > 1
    ddp = DistributedDataParallel(model, bucket_cap_mb=plan.cap_mb, measure_noise_scale=True)
    try:
        assert tuple(b.nbytes for b in ddp.buckets) == plan.buckets
    finally:
        ddp.close()
