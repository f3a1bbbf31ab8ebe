"""Reference solutions of notebook 04 (real ranks)."""

from __future__ import annotations

import numpy as np


def busbw(nbytes: float, seconds: float, p: int) -> float:
    """nccl-tests' bus bandwidth: algbw x 2(p-1)/p, what each link carries, comparable across p."""
    return nbytes / seconds * 2 * (p - 1) / p


def fit_alpha_beta(sizes: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """Least-squares line time = alpha + beta * size: the intercept and the slope."""
    beta, alpha = np.polyfit(sizes, seconds, 1)
    return float(alpha), float(beta)
