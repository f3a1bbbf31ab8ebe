"""Calibration you can trust: the spread over repeated rounds, the verdict, and ranks sharing cores.

Synthetic measurements only (no timing decides a test): the expected medians, ranges and
verdicts are worked out by hand from the numbers written here.
"""

from __future__ import annotations

import json

import pytest

from collectives.sim import CostModel, simulate, trust
from collectives.sim import calibrate as cal
from collectives.sim.machine import machine_from_options


def model(alpha=2e-6, bw=10e9, gamma_bw=4e9, delta_bw=8e9, call=5e-7, curve=None):
    m = CostModel.textbook(alpha, 1 / bw, 1 / gamma_bw, 1 / delta_bw).replace(call_overhead=call, name="calibrated")
    d = m.to_dict()
    if curve is not None:
        d["message_curve"] = curve
    return d


def test_spread_of_each_parameter_over_rounds():
    rounds = [model(alpha=2e-6, bw=10e9), model(alpha=3e-6, bw=10e9), model(alpha=4e-6, bw=10e9)]
    s = trust.parameter_spread(rounds)
    assert s["alpha"]["median"] == 3e-6 and s["alpha"]["min"] == 2e-6 and s["alpha"]["max"] == 4e-6
    assert s["alpha"]["spread"] == pytest.approx(2 / 3)  # (4 - 2) / 3
    assert s["beta"]["spread"] == 0.0 and s["beta"]["median"] == pytest.approx(1e-10)
    assert set(s) == {"alpha", "beta", "gamma", "delta", "call_overhead"}


def test_a_parameter_zero_in_the_median_but_not_everywhere_is_infinitely_spread():
    rounds = [model(call=0.0), model(call=0.0), model(call=1e-6)]
    assert trust.parameter_spread(rounds)["call_overhead"]["spread"] == float("inf")
    assert trust.parameter_spread([model(call=0.0)] * 2)["call_overhead"]["spread"] == 0.0
    with pytest.raises(ValueError, match="at least one round"):
        trust.parameter_spread([])


def test_the_new_users_calibration_is_refused_and_a_quiet_one_is_trusted():
    """1/beta = 16 GB/s then 1.4 GB/s minutes later (the issue's report): not to be trusted."""
    noisy = {"2": trust.parameter_spread([model(bw=16e9), model(bw=1.4e9), model(bw=9e9)])}
    problems = trust.untrusted(noisy)
    assert len(problems) == 1
    assert "p=2: 1/beta ranged 1.4 GB/s .. 16 GB/s" in problems[0] and "> 25%" in problems[0]
    quiet = {"2": trust.parameter_spread([model(bw=10e9), model(bw=10.5e9), model(bw=9.8e9)])}
    assert trust.untrusted(quiet) == []  # (1/9.8 - 1/10.5) / (1/10) = 6.8%
    assert trust.untrusted(quiet, max_spread=0.05) != []
    # the per-call cost is reported but does not decide
    calls = {"3": trust.parameter_spread([model(call=1e-7), model(call=9e-7)])}
    assert trust.untrusted(calls) == []


def test_a_busy_machine_is_not_trusted_even_when_rounds_agree(monkeypatch):
    """Rounds measured under the same heavy load agree with each other and are still wrong."""
    assert trust.busy_machine([14.7, 12.0, 9.0], 2) == (
        "the load average was 14.7 on 2 core(s) before measuring: other processes held the cores"
    )
    assert trust.busy_machine([1.5, 3.0, 3.0], 2) is None and trust.busy_machine(None, 2) is None
    monkeypatch.setattr(cal, "usable_cores", lambda: 2)
    agreeing = [part(2, model(), model())]
    assert cal.merge_profile(agreeing, load_before=[0.3, 0.2, 0.1])["trusted"] is True
    busy = cal.merge_profile(agreeing, load_before=[14.7, 12.0, 9.0])
    assert busy["trusted"] is False and busy["untrusted"] == [trust.busy_machine([14.7], 2)]
    assert "the load average was [14.7, 12.0, 9.0]" in cal.describe_profile(busy)


def test_median_model_takes_medians_and_pointwise_median_curves():
    curves = [[[0, 1e-6], [1024, 4e-6]], [[0, 3e-6], [1024, 2e-6]], [[0, 2e-6], [1024, 9e-6]]]
    rounds = [model(alpha=a, curve=c) for a, c in zip((1e-6, 5e-6, 2e-6), curves)]
    m = trust.median_model(rounds)
    assert m["alpha"] == 2e-6
    assert m["message_curve"] == [[0, 2e-6], [1024, 4e-6]]
    assert m["ports"] == "one" and m["name"] == "calibrated"
    bad = [model(curve=[[0, 1e-6], [1024, 2e-6]]), model(curve=[[0, 1e-6], [2048, 2e-6]])]
    with pytest.raises(ValueError, match="different sizes"):
        trust.median_model(bad)


def test_core_share_and_usable_cores(monkeypatch):
    assert [trust.core_share(p, 2) for p in (1, 2, 3, 4, 8)] == [1.0, 1.0, 1.5, 2.0, 4.0]
    with pytest.raises(ValueError, match="cores=0"):
        trust.core_share(2, 0)
    monkeypatch.setattr(trust.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert trust.usable_cores() == 3
    monkeypatch.delattr(trust.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(trust.os, "cpu_count", lambda: 6)
    assert trust.usable_cores() == 6


def part(p, *models):
    return {"ranks": p, "mpi": "test MPI", "rounds": [{"model": m, **MEASUREMENTS} for m in models]}


MEASUREMENTS = {k: [] for k in ("exchange", "exchange_reduce", "exchange_3calls", "reduce", "copy")}


def test_merge_profile_keeps_medians_spreads_verdict_and_core_shares(monkeypatch):
    monkeypatch.setattr(cal, "usable_cores", lambda: 2)
    parts = [
        part(4, model(alpha=8e-6), model(alpha=8.5e-6), model(alpha=7.5e-6)),
        part(2, model(alpha=2e-6, bw=16e9), model(alpha=2e-6, bw=1.4e9), model(alpha=2e-6, bw=9e9)),
    ]
    profile = cal.merge_profile(parts)
    assert profile["cores"] == 2 and profile["core_share"] == {"2": 1.0, "4": 2.0}
    assert profile["by_ranks"]["4"]["alpha"] == 8e-6 and profile["model"] == profile["by_ranks"]["2"]
    assert profile["by_ranks"]["2"]["beta"] == pytest.approx(1 / 9e9)
    assert profile["rounds"] == 3 and profile["trusted"] is False
    assert len(profile["untrusted"]) == 2 and profile["untrusted"][0].startswith("p=2: 1/beta")
    assert profile["untrusted"][1].startswith("p=2: bimodal between launches: 1/beta 1.4 GB/s (launch 2)")
    text = cal.describe_profile(profile)
    assert "NOT trustworthy" in text and "how to get a quiet measurement" in text and "-bind-to core" in text
    assert "spread over 3 rounds" in text and "ranks per core p=2: 1, p=4: 2" in text
    quiet = cal.merge_profile([part(2, model(), model(alpha=2.1e-6))])
    assert quiet["trusted"] is True and "NOT trustworthy" not in cal.describe_profile(quiet)
    old = cal.merge_profile([{"ranks": 2, "model": model(), **MEASUREMENTS}])  # a part from before rounds
    assert old["rounds"] == 1 and old["trusted"] is True


def test_predictions_for_more_ranks_than_cores_stretch_by_ranks_per_core(tmp_path, monkeypatch):
    monkeypatch.setattr(cal, "usable_cores", lambda: 2)
    curve = [[0, 1e-6], [1 << 20, 1e-4]]
    profile = cal.merge_profile([part(2, model(alpha=2e-6, curve=curve)), part(3, model(alpha=5e-6))])
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    machine = machine_from_options(profile=path)
    assert machine.cores == 2
    assert machine.model_for(2).alpha == 2e-6 and machine.model_for(3).alpha == 5e-6  # measured: as measured
    assert machine.model_for(1).alpha == 2e-6  # fewer ranks than cores: still one core each
    # 6 ranks on 2 cores: 3 per core; the nearest measured is p=3 at 1.5 per core -> x2
    six = machine.model_for(6)
    assert six.alpha == pytest.approx(1e-5) and six.call_overhead == pytest.approx(2 * 5e-7)
    assert six.gamma == pytest.approx(2 / 4e9) and six.ports == "one"
    four = machine_from_options(profile=path, model="abg").model_for(4)  # nearest p=3 -> 2 / 1.5
    assert four.alpha == pytest.approx(5e-6 * 4 / 3) and four.ports == "multi"


def test_a_stretched_model_stretches_every_prediction():
    """The time model is linear in its costs: every cost x2 must give exactly twice the time."""
    base = CostModel.textbook(2e-6, 1 / 10e9, 1 / 4e9).replace(
        call_overhead=3e-7, message_curve=((0, 2e-6), (1 << 20, 1e-4)), reduce_curve=((0, 0.0), (1 << 20, 3e-4))
    )
    doubled = base.scaled(2.0)
    assert doubled.message_curve == ((0, 4e-6), (1 << 20, 2e-4)) and doubled.eager_limit == base.eager_limit
    assert base.scaled(1.0) is base
    with pytest.raises(ValueError, match="positive"):
        base.scaled(0)
    for name in ("ring", "tree", "rabenseifner"):
        assert simulate(name, 4, 3 << 20, model=doubled).time == pytest.approx(
            2 * simulate(name, 4, 3 << 20, model=base).time, rel=1e-12
        )


def test_calibrate_refuses_zero_rounds_before_launching_anything(tmp_path):
    with pytest.raises(ValueError, match="--rounds must be at least 1"):
        cal.calibrate([2], tmp_path / "p.json", rounds=0)


def placed(*cpus_per_rank):
    """A launch's placement: rank r seen on the CPUs ``cpus_per_rank[r]`` ({cpu: times})."""
    return [{"rank": r, "affinity": [0, 1], "cpus": cpus} for r, cpus in enumerate(cpus_per_rank)]


def test_launch_modes_split_at_the_largest_jump_above_the_gap():
    """The issue's launches: 14.1, 14.3 GB/s and 1.53 GB/s are two modes; 8 vs 12 GB/s is noise."""
    assert trust.launch_modes([14.1e9, 14.3e9, 1.53e9]) == ([2], [0, 1])
    assert trust.launch_modes([8e9, 12e9, 10e9]) is None  # largest jump 1.2x
    assert trust.launch_modes([1e9, 1.1e9, 5e9, 5.2e9]) == ([0, 1], [2, 3])
    assert trust.launch_modes([3e9]) is None and trust.launch_modes([]) is None


def test_shared_cores_names_ranks_on_one_cpu_only_when_there_were_cores_enough():
    assert trust.shared_cores(placed({"0": 500, "1": 25}, {"0": 525}), cores=2) == "ranks 0, 1 on cpu 0"
    assert trust.shared_cores(placed({"1": 525}, {"1": 170, "0": 355}), cores=2) is None  # mostly apart
    assert trust.shared_cores(placed({"0": 9}, {"0": 9}, {"1": 9}), cores=2) is None  # 3 ranks, 2 cores: must share
    assert trust.shared_cores(placed({}, {}), cores=2) is None  # never seen: nothing to say
    assert trust.main_cpu({"3": 2, "1": 7}) == 1 and trust.main_cpu({}) is None


def test_launches_pooled_per_rank_count_and_a_bimodal_or_crowded_launch_is_untrusted(monkeypatch):
    """Three launches at p=2 as separate parts (calibrate's default): pooled into one model, and the
    slow mode and the launch whose ranks shared a core are named."""
    monkeypatch.setattr(cal, "usable_cores", lambda: 2)

    def launch(bw, placement):
        return {
            "ranks": 2,
            "mpi": "test MPI",
            "rounds": [{"model": model(bw=bw), "placement": placement, **MEASUREMENTS}],
        }

    apart, together = placed({"0": 9}, {"1": 9}), placed({"0": 9}, {"0": 9})
    profile = cal.merge_profile(
        [launch(14.1e9, apart), launch(1.53e9, together), launch(14.3e9, apart)], load_before=[0.3], bind="none"
    )
    assert profile["rounds"] == 3 and profile["bind"] == "none"
    assert profile["by_ranks"]["2"]["beta"] == pytest.approx(1 / 14.1e9)  # the median launch
    assert [round(b / 1e9, 2) for b in profile["launch_bandwidth"]["2"]] == [14.1, 1.53, 14.3]
    problems = profile["untrusted"]
    assert any(
        p.startswith("p=2: bimodal between launches: 1/beta 1.53 GB/s (launch 2) vs 14.1, 14.3 GB/s (launches 1, 3)")
        for p in problems
    )
    assert "p=2: launch 2: ranks shared a core with 2 cores free (ranks 0, 1 on cpu 0)" in problems
    quiet = cal.merge_profile([launch(14.1e9, apart), launch(13.5e9, apart), launch(14.3e9, apart)], load_before=[0.3])
    assert quiet["trusted"] is True


def test_launch_command_pins_ranks_unless_told_not_to(monkeypatch):
    monkeypatch.setattr(cal, "mpiexec_path", lambda: "mpiexec")
    monkeypatch.setattr(cal, "usable_cores", lambda: 2)
    monkeypatch.setattr(cal, "_open_mpi", lambda: False)
    assert cal.launch_command(2) == ["mpiexec", "--bind-to", "core", "-n", "2"]  # auto: a core per rank
    assert cal.launch_command(3) == ["mpiexec", "-n", "3"]  # auto: more ranks than cores, left to the OS
    assert cal.launch_command(4, "core") == ["mpiexec", "--bind-to", "core", "-n", "4"]
    assert cal.launch_command(4, "hwthread") == ["mpiexec", "--bind-to", "hwthread", "-n", "4"]
    assert cal.launch_command(2, "none") == ["mpiexec", "-n", "2"]
    monkeypatch.setattr(cal, "_open_mpi", lambda: True)  # Open MPI binds more ranks than cores only when allowed
    assert cal.launch_command(4, "core") == ["mpiexec", "--bind-to", "core:overload-allowed", "-n", "4"]
    assert cal.launch_command(2) == ["mpiexec", "--bind-to", "core", "-n", "2"]


def launch_round(bw, plain_us, dirty_us):
    """One launch's round: 1/beta ``bw`` and the two exchanges' times at the probe size (microseconds)."""
    m = trust.PROBE_BYTES
    return {"model": model(bw=bw), "exchange": [[m, plain_us * 1e-6]], "exchange_reduce": [[m, dirty_us * 1e-6]]}


def test_a_slow_mode_only_for_data_just_written_is_put_on_the_cores_not_on_the_ranks():
    """The quiet slow launch of the issue: 256 KiB re-sent in 27 us in both modes, but sent after
    reducing into it in 240 us against 70 us."""
    rounds = [launch_round(14.1e9, 27, 70), launch_round(14.3e9, 26, 71), launch_round(1.53e9, 27, 240)]
    problems = trust.launch_problems(2, rounds, cores=2)
    assert problems[0].startswith(
        "p=2: bimodal between launches: a 256 KiB reducing exchange took 240 us (launch 3) vs 70, 71 us (launches 1, 2)"
    )
    assert problems[1].startswith("p=2: the slow launches sent data just written 3.4x slower (70 -> 240 us")
    assert (
        "re-sent an unmodified buffer as fast (26 -> 27 us)" in problems[1]
        and "not ranks sharing a core" in problems[1]
    )
    # one mode by the measured exchange, however far apart the fitted 1/beta: not bimodal
    one_mode = [launch_round(32e9, 27, 71), launch_round(41e9, 26, 84), launch_round(191e9, 27, 73)]
    assert trust.launch_problems(2, one_mode, cores=2) == []
    # both exchanges slow (ranks taking turns on one core): no such diagnosis
    turns = [launch_round(14.1e9, 27, 70), launch_round(14.3e9, 26, 71), launch_round(1.53e9, 90, 240)]
    assert trust.dirty_lines(turns, [2], [0, 1]) is None
    assert len(trust.launch_problems(2, turns, cores=2)) == 1
    # rounds without the curves (older parts): nothing to say
    assert trust.dirty_lines([{"model": model()}, {"model": model()}], [0], [1]) is None


def test_validation_predicts_from_the_calibration_launches_in_its_own_mode():
    """Calibrated in two fast launches (70 us per 256 KiB reducing exchange) and a slow one (240 us):
    a validation launch probing 230 us is predicted from the slow launch, one probing 75 us from
    the two fast ones."""
    models = [model(bw=14.1e9), model(bw=14.3e9), model(bw=1.53e9)]
    calibrated = [70e-6, 71e-6, 240e-6]
    assert cal.matching_launches(models, calibrated, 230e-6) == [models[2]]
    assert cal.matching_launches(models, calibrated, 75e-6) == models[:2]
    assert cal.matching_launches(models, [70e-6, 100e-6, 120e-6], 70e-6) == models  # one mode: every launch
