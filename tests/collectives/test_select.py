"""Fitting algorithm="auto"'s machine model to measurements, and loading it (no MPI)."""

import json
import math

import pytest

from collectives import select
from collectives.algorithms import ALGORITHMS
from collectives.bench import fit as fit_cli

TRUE = select.MachineModel(7e-6, 1 / 3e9, 1 / 5e9)


def synthetic(model=TRUE, noise=0.0):
    samples = []
    for i, name in enumerate(sorted(ALGORITHMS)):
        for p in (2, 3, 4):
            for n in (16, 1024, 65536, 1 << 20, 16 << 20):
                t = ALGORITHMS[name].cost(p, n, 4).time(model.alpha, model.beta, model.gamma)
                samples.append((name, p, n, 4, t * math.exp(noise * ((i + p + n) % 3 - 1))))
    return samples


def test_fit_recovers_the_model_that_made_the_times():
    model, error = select.fit(synthetic(), start=select.MachineModel(1e-6, 1e-10, 1e-10))
    assert model.alpha == pytest.approx(TRUE.alpha, rel=0.01)
    assert model.beta == pytest.approx(TRUE.beta, rel=0.01)
    assert model.gamma == pytest.approx(TRUE.gamma, rel=0.01)
    assert error < 1e-3


def test_fit_is_robust_to_noise_and_says_how_well_it_fits():
    model, error = select.fit(synthetic(noise=0.2))
    assert 0.05 < error < 0.3
    assert model.alpha == pytest.approx(TRUE.alpha, rel=0.3)


def test_fit_needs_usable_samples():
    with pytest.raises(ValueError, match="no usable samples"):
        select.fit([("no_such_algorithm", 2, 8, 4, 1e-6), ("ring", 1, 8, 4, 1e-6)])


def test_model_from_a_calibration_profile(tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "model": {"alpha": 1e-6, "beta": 1e-10, "gamma": 2e-10},
        "by_ranks": {"2": {"alpha": 2e-6, "beta": 1e-10, "gamma": 2e-10},
                     "4": {"alpha": 4e-6, "beta": 2e-10, "gamma": 3e-10}},
    }))  # fmt: skip
    assert select.model_from_profile(profile) == select.MachineModel(1e-6, 1e-10, 2e-10)
    assert select.model_from_profile(profile, p=2).alpha == 2e-6
    assert select.model_from_profile(profile, p=5).alpha == 4e-6  # the nearest rank count
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a calibration profile"):
        select.model_from_profile(bad)


def test_set_model_changes_the_choice():
    old = select.get_model()
    try:
        select.set_model(select.MachineModel(1e-9, 1e-8, 1e-12))  # messages free, bytes dear
        bandwidth_bound = select.choose(8, 1 << 20, 4)
        select.set_model(select.MachineModel(1e-3, 1e-15, 1e-15))  # messages dear, bytes free
        latency_bound = select.choose(8, 1 << 20, 4)
        assert latency_bound == "recursive_doubling" and bandwidth_bound != latency_bound
    finally:
        select.set_model(old)


def test_models_per_rank_count():
    old, old_by_ranks = select.get_model(), select.models()
    fast, slow = select.MachineModel(1e-6, 1e-10, 1e-10), select.MachineModel(1e-4, 1e-9, 1e-9)
    try:
        select.set_model(fast)
        select.set_model(slow, p=4)
        assert select.models() == {4: slow} and select.get_model(4) == slow
        assert select.get_model(2) == fast == select.get_model(3) == select.get_model()  # no model of their own
        select.set_model(fast)  # one model for every rank count again
        assert select.models() == {} and select.get_model(4) == fast
    finally:
        select.set_model(old)
        for p, m in old_by_ranks.items():
            select.set_model(m, p=p)


def test_model_environment_syntax():
    by_ranks, default = select.parse_models("2:1e-6,1e-10,2e-10; 4:1e-4,1e-9,3e-10")
    assert default is None and by_ranks[4] == select.MachineModel(1e-4, 1e-9, 3e-10) and set(by_ranks) == {2, 4}
    assert select.parse_models("1e-6,1e-10,2e-10") == ({}, select.MachineModel(1e-6, 1e-10, 2e-10))
    with pytest.raises(ValueError, match="COLLECTIVES_MODEL must be"):
        select.parse_models("2:1e-6,1e-10")


def test_fit_command_line(tmp_path, capsys):
    runs = []
    for p in (2, 4):
        records = [
            {"algorithm": name, "ranks": p, "bytes": n, "type": "float32", "time_us": t * 1e6}
            for name, q, n, _, t in synthetic() if q == p
        ] + [{"algorithm": "MPI", "ranks": p, "bytes": 16, "type": "float32", "time_us": 1.0}]  # fmt: skip
        path = tmp_path / f"run{p}.json"
        path.write_text(json.dumps({"ranks": p, "records": records}))
        runs.append(str(path))
    assert fit_cli.main([*runs, "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "p=2: alpha=7 us" in out and "p=4: alpha=7 us" in out  # one fit per rank count
    assert "picks the measured fastest in 10 of 10 cases" in out  # the model that made the times
    assert "export COLLECTIVES_MODEL='2:7e-06," in out
    with pytest.raises(SystemExit, match=r"not a 'collectives\.bench --json' output"):
        fit_cli.main([str(tmp_path / "missing.json")])
