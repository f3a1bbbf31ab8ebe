"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, appendix A).

It estimates the batch size beyond which a larger batch stops buying proportionally faster
progress: below B_simple, doubling the batch nearly halves the steps needed; far above it,
the extra samples are wasted. Data-parallel training gives two batch sizes for free every step:
each rank's local gradient (batch B_small) and the averaged gradient (batch B_big = ranks x
B_small). From their squared norms the unbiased estimators are

    |G|^2    ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

where |G_small|^2 is the rank-average of the local squared norms. Each estimate is noisy, so
both are smoothed with separate exponential moving averages before taking the ratio.
"""

from __future__ import annotations

import math


class GradientNoiseScale:
    """Online B_simple from (local, global) squared gradient norms, one update per step."""

    def __init__(self, small_batch: int, big_batch: int, ema: float = 0.95) -> None:
        if big_batch <= small_batch:
            raise ValueError(
                f"the noise scale needs two batch sizes; got B_small={small_batch}, B_big={big_batch} "
                "(train on 2 or more ranks)"
            )
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        self.b_small, self.b_big, self.ema = small_batch, big_batch, ema
        self._g2 = self._trace = 0.0
        self._weight = 0.0  # for bias correction of the moving averages

    def update(self, small_sq_norm: float, big_sq_norm: float) -> None:
        """Feed one step's rank-averaged local squared norm and the global squared norm."""
        bs, bb = self.b_small, self.b_big
        g2 = (bb * big_sq_norm - bs * small_sq_norm) / (bb - bs)
        trace = (small_sq_norm - big_sq_norm) / (1.0 / bs - 1.0 / bb)
        self._g2 = self.ema * self._g2 + (1 - self.ema) * g2
        self._trace = self.ema * self._trace + (1 - self.ema) * trace
        self._weight = self.ema * self._weight + (1 - self.ema)

    @property
    def gradient_sq_norm(self) -> float:
        return self._g2 / self._weight if self._weight else math.nan

    @property
    def trace_covariance(self) -> float:
        return self._trace / self._weight if self._weight else math.nan

    @property
    def b_simple(self) -> float:
        """tr(Sigma) / |G|^2 from the smoothed estimates (nan before the first update)."""
        g2 = self.gradient_sq_norm
        return self.trace_covariance / g2 if g2 > 0 else math.nan
