"""LAMB: layer-wise adaptive moments (You et al. 2019), Adam with a per-layer trust ratio."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl import kernels
from minidl.optim.optimizer import Optimizer, adam_moments, excluded_from_adaptation, update_moments
from minidl.tensor import Tensor


class LAMB(Optimizer):
    """Algorithm 2 of the paper (with Adam's bias correction), per parameter tensor ``w``::

        m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2
        r = (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
        u = r + weight_decay * w
        w -= lr * (||w|| / ||u||) * u        (ratio 1 when ||w|| or ||u|| is zero)

    Biases and normalisation parameters (at most one dimension) are excluded by default
    (``exclude_bias_and_norm=True``): no weight decay and a trust ratio of 1 (a plain Adam step).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        exclude_bias_and_norm: bool = True,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, exclude_bias_and_norm=exclude_bias_and_norm
        )
        super().__init__(params, defaults)

    non_negative = ("lr", "eps", "weight_decay")

    def _update(self, group: dict[str, Any], p: Tensor, grad: np.ndarray, state: dict[str, Any]) -> None:
        (b1, b2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
        adapt = not (group["exclude_bias_and_norm"] and excluded_from_adaptation(p))
        t = adam_moments(state, p.data)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if kernels.wanted(p.data) and kernels.optim.lamb(p.data, grad, m, v, t, group["lr"], (b1, b2), eps, wd, adapt):
            return  # numba: the update below in two passes (the trust ratio needs both norms first)
        update_moments(m, v, grad, b1, b2)
        update = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        ratio = 1.0
        if adapt:
            if wd:
                update = update + wd * p.data
            w_norm = float(np.linalg.norm(p.data))
            u_norm = float(np.linalg.norm(update))
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        p.data -= (group["lr"] * ratio) * update
