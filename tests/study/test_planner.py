"""The planner's arithmetic: time to target = S(b p) x step time, shared cores, the choice of the best."""

import pytest

from minidl.distributed import predict
from minidl.study.planner import ComputeProfile, Prediction, StepsModel, best, predict_one, reason

STEPS = StepsModel(s_min=100.0, b_crit=64.0, target=0.9, recipe="momentum", source="test")


def test_steps_model_is_mccandlish():
    assert STEPS.steps(64) == pytest.approx(200.0)
    assert STEPS.steps(6400) == pytest.approx(101.0)


def test_one_prediction_adds_compute_and_exposed_communication():
    compute = ComputeProfile(32, forward=1e-3, backward=2e-3, optimizer=0.5e-3, param_bytes=(4000, 400))
    on = predict.machine(link="1Gbps,50us")
    one = predict_one(compute, STEPS, 1, "ring", on)
    assert one.exposed == 0 and one.step_time == pytest.approx(3.5e-3)
    assert one.time_to_target == pytest.approx(STEPS.steps(32) * 3.5e-3)
    four = predict_one(compute, STEPS, 4, "ring", on, cores=2)
    t = predict.allreduce_time(4400, 4, "ring", on)  # one bucket, ready when backward ends: all exposed
    assert four.exposed == pytest.approx(t)
    assert four.compute == pytest.approx(2 * 3.5e-3)  # 4 ranks on 2 cores: compute takes twice as long
    assert four.global_batch == 128 and four.steps == pytest.approx(STEPS.steps(128))


def pred(p, alg, tta):
    return Prediction(p, alg, 32 * p, tta, 1.0, 0.0, 0.0)  # step time 1 s: time to target = steps


def test_best_is_the_fewest_workers_within_one_percent_of_the_fastest():
    preds = [pred(1, "ring", 100.0), pred(8, "ring", 50.5), pred(8, "tree", 50.2), pred(64, "ring", 50.0)]
    win = best(preds)
    assert (win.workers, win.algorithm) == (8, "tree")
    assert best(preds, within=0.0).workers == 64
    assert "256" in reason([pred(256, "ring", 10.0), pred(512, "ring", 9.99)], STEPS)
