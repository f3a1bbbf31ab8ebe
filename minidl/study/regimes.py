"""The shape of a steps-to-target curve: McCandlish et al.'s fit and the three regimes of Shallue et al.

McCandlish et al. (2018) model the steps S and samples E = S B needed to reach a target at batch B
as the hyperbola (S/S_min - 1)(E/E_min - 1) = 1, i.e. S(B) = S_min (1 + B_crit / B) with the
critical batch B_crit = E_min / S_min. On log-log axes that curve has slope -B_crit / (B + B_crit):
about -1 well below B_crit (perfect scaling: doubling the batch halves the steps), about 0 well
above it (maximal data parallelism: more samples per step buy nothing), and in between the
diminishing returns that Shallue et al. (2019) observed on every workload they measured.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PERFECT_SLOPE = -0.8  # a segment this steep or steeper still scales (almost) perfectly
FLAT_SLOPE = -0.2  # a segment this flat or flatter buys (almost) nothing


@dataclass(frozen=True)
class McCandlishFit:
    """S(B) = s_min (1 + b_crit / B); e_min = s_min b_crit samples; rms error in log(steps)."""

    s_min: float
    b_crit: float
    rms_log_error: float

    @property
    def e_min(self) -> float:
        return self.s_min * self.b_crit

    def steps(self, batch: float | np.ndarray) -> float | np.ndarray:
        return self.s_min * (1.0 + self.b_crit / np.asarray(batch, dtype=float))


def fit_mccandlish(batches: Sequence[float], steps: Sequence[float]) -> McCandlishFit:
    """Least-squares fit of log S = log S_min + log(1 + B_crit / B) over the measured points.

    For a fixed B_crit the best log S_min is the mean residual, so only B_crit is searched: on a
    fine log grid spanning far beyond the data, then refined by golden-section search.
    """
    b = np.asarray(batches, dtype=float)
    s = np.asarray(steps, dtype=float)
    keep = np.isfinite(s) & (s > 0)
    b, s = b[keep], s[keep]
    if len(b) < 2 or len(set(b)) < 2:
        raise ValueError(f"the fit needs steps at two or more batch sizes, got {len(set(b))}")
    log_s = np.log(s)

    def cost(log_bc: float) -> tuple[float, float]:
        shape = np.log1p(np.exp(log_bc) / b)
        log_smin = float(np.mean(log_s - shape))
        return float(np.mean((log_s - log_smin - shape) ** 2)), log_smin

    lo, hi = math.log(b.min() / 1e3), math.log(b.max() * 1e3)
    grid = np.linspace(lo, hi, 400)
    costs = [cost(x)[0] for x in grid]
    i = int(np.argmin(costs))
    a, c = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        x1, x2 = c - ratio * (c - a), a + ratio * (c - a)
        if cost(x1)[0] < cost(x2)[0]:
            c = x2
        else:
            a = x1
    best = (a + c) / 2
    err, log_smin = cost(best)
    return McCandlishFit(math.exp(log_smin), math.exp(best), math.sqrt(err))


@dataclass(frozen=True)
class Regimes:
    """Where scaling stops being perfect and where it stops paying at all (batch sizes).

    ``perfect_until``: the largest batch reached by perfect-scaling segments from the smallest
    batch (None if the very first doubling already falls short). ``maximal_from``: the batch from
    which every further doubling is flat (None if the curve never flattens).
    """

    perfect_until: float | None
    maximal_from: float | None
    slopes: tuple[float, ...]  # log-log slope of each segment between consecutive batches

    def label(self, batch: float) -> str:
        if self.maximal_from is not None and batch >= self.maximal_from:
            return "maximal data parallelism"
        if self.perfect_until is not None and batch <= self.perfect_until:
            return "perfect scaling"
        return "diminishing returns"


def segment_slopes(batches: Sequence[float], steps: Sequence[float]) -> list[float]:
    b, s = np.log(np.asarray(batches, float)), np.log(np.asarray(steps, float))
    return list(np.diff(s) / np.diff(b))


def find_regimes(
    batches: Sequence[float], steps: Sequence[float], perfect: float = PERFECT_SLOPE, flat: float = FLAT_SLOPE
) -> Regimes:
    """Split a measured curve (batches ascending, finite steps) into the three regimes by slope."""
    if len(batches) != len(steps) or len(batches) < 2:
        raise ValueError("find_regimes needs at least two (batch, steps) points")
    if any(b2 <= b1 for b1, b2 in itertools.pairwise(batches)):
        raise ValueError("find_regimes needs strictly ascending batch sizes")
    slopes = segment_slopes(batches, steps)
    perfect_until = None
    for i, slope in enumerate(slopes):
        if slope > perfect:
            break
        perfect_until = batches[i + 1]
    maximal_from = None
    for i in range(len(slopes) - 1, -1, -1):
        if slopes[i] < flat:
            break
        maximal_from = batches[i]
    if perfect_until is not None and maximal_from is not None and maximal_from < perfect_until:
        maximal_from = perfect_until  # a noisy curve: the regimes never overlap
    return Regimes(perfect_until, maximal_from, tuple(slopes))


def steps_to_target(curve: Sequence[Sequence[float]], target: float) -> int | None:
    """The first evaluated step whose accuracy reaches ``target`` (None: not reached)."""
    for step, acc in curve:
        if acc >= target:
            return int(step)
    return None
