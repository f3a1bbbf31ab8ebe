import math

import numpy as np
import pytest

from minidl.distributed import GradientNoiseScale


def test_recovers_known_noise_scale():
    rng = np.random.default_rng(0)
    dim, ranks, b = 50, 4, 8
    true_g = rng.standard_normal(dim) * 0.5
    sigma = 2.0  # per-sample gradient noise std per coordinate: tr(Sigma) = dim * sigma^2
    expected = dim * sigma**2 / float(true_g @ true_g)
    est = GradientNoiseScale(small_batch=b, big_batch=ranks * b, ema=0.99)
    for _ in range(3000):
        samples = true_g + sigma * rng.standard_normal((ranks, b, dim))
        local = samples.mean(axis=1)  # each rank's gradient
        small = float(np.mean(np.sum(local**2, axis=1)))
        big = float(np.sum(local.mean(axis=0) ** 2))
        est.update(small, big)
    assert est.b_simple == pytest.approx(expected, rel=0.15)


def test_needs_two_batch_sizes():
    with pytest.raises(ValueError, match="2 or more ranks"):
        GradientNoiseScale(8, 8)
    assert math.isnan(GradientNoiseScale(8, 16).b_simple)
