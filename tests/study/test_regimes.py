"""The regime finder and the McCandlish fit recover the parameters of synthetic steps-to-target curves.

Expected values come from the generator: S(B) = S_min (1 + B_crit / B) has log-log slope
-B_crit / (B + B_crit), which is -0.8 at B = B_crit / 4 and -0.2 at B = 4 B_crit.
"""

import numpy as np
import pytest

from minidl.study.regimes import find_regimes, fit_mccandlish, steps_to_target

BATCHES = [2**k for k in range(0, 15)]  # 1 .. 16384


def synthetic(s_min: float, b_crit: float, noise: float = 0.0, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [s_min * (1 + b_crit / b) * float(np.exp(noise * rng.standard_normal())) for b in BATCHES]


@pytest.mark.parametrize("s_min, b_crit", [(50.0, 200.0), (1000.0, 8.0), (12.0, 3000.0)])
def test_fit_recovers_exact_parameters(s_min, b_crit):
    fit = fit_mccandlish(BATCHES, synthetic(s_min, b_crit))
    assert fit.s_min == pytest.approx(s_min, rel=1e-3)
    assert fit.b_crit == pytest.approx(b_crit, rel=1e-3)
    assert fit.e_min == pytest.approx(s_min * b_crit, rel=2e-3)
    assert fit.rms_log_error < 1e-4


@pytest.mark.parametrize("seed", range(5))
def test_fit_recovers_parameters_through_five_percent_noise(seed):
    fit = fit_mccandlish(BATCHES, synthetic(50.0, 200.0, noise=0.05, seed=seed))
    assert fit.s_min == pytest.approx(50.0, rel=0.1)
    assert fit.b_crit == pytest.approx(200.0, rel=0.25)


def test_fit_satisfies_the_hyperbola():
    fit = fit_mccandlish(BATCHES, synthetic(30.0, 100.0))
    for b in (10.0, 100.0, 1000.0):
        s = fit.steps(b)
        e = s * b
        assert (s / 30.0 - 1) * (e / 3000.0 - 1) == pytest.approx(1.0, rel=1e-2)


@pytest.mark.parametrize("b_crit", [64.0, 200.0, 500.0])
def test_regimes_are_found_where_the_slope_says(b_crit):
    r = find_regimes(BATCHES, synthetic(40.0, b_crit))
    # the grid is powers of two: each boundary within a factor 2 of the continuous one
    assert b_crit / 4 / 2 <= r.perfect_until <= b_crit / 4 * 2
    assert 4 * b_crit / 2 <= r.maximal_from <= 4 * b_crit * 2
    assert r.label(1) == "perfect scaling"
    assert r.label(b_crit) == "diminishing returns"
    assert r.label(16384) == "maximal data parallelism"


def test_pure_perfect_scaling_never_flattens_and_a_flat_curve_never_scales():
    r = find_regimes(BATCHES, [1e5 / b for b in BATCHES])
    assert r.perfect_until == BATCHES[-1] and r.maximal_from is None
    assert all(s == pytest.approx(-1.0) for s in r.slopes)
    r = find_regimes(BATCHES, [7.0] * len(BATCHES))
    assert r.perfect_until is None and r.maximal_from == BATCHES[0]


def test_regimes_reject_bad_input():
    with pytest.raises(ValueError, match="ascending"):
        find_regimes([8, 4], [1.0, 2.0])
    with pytest.raises(ValueError, match="two"):
        find_regimes([8], [1.0])
    with pytest.raises(ValueError, match="two or more"):
        fit_mccandlish([8, 16], [10.0, float("inf")])


def test_steps_to_target_is_the_first_evaluation_at_or_above_it():
    curve = [(1, 0.2), (2, 0.5), (5, 0.91), (9, 0.89), (12, 0.95)]
    assert steps_to_target(curve, 0.9) == 5
    assert steps_to_target(curve, 0.95) == 12
    assert steps_to_target(curve, 0.96) is None
