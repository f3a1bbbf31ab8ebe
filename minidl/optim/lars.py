"""LARS: layer-wise adaptive rate scaling (You, Gitman and Ginsburg 2017), for large-batch SGD."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl import kernels
from minidl.optim.optimizer import Optimizer, excluded_from_adaptation
from minidl.tensor import Tensor


def trust_ratio(w_norm: float, g_norm: float, eta: float, weight_decay: float, eps: float) -> float:
    """``eta * ||w|| / (||g|| + weight_decay * ||w|| + eps)``; 1 when either norm is zero (fresh layers)."""
    if w_norm == 0.0 or g_norm == 0.0:
        return 1.0
    return eta * w_norm / (g_norm + weight_decay * w_norm + eps)


class LARS(Optimizer):
    """SGD with momentum whose step for each parameter tensor (layer) is scaled by a trust ratio.

    Algorithm 1 of the paper, per parameter tensor ``w`` with gradient ``g``::

        local_lr = eta * ||w|| / (||g|| + weight_decay * ||w||)
        v = momentum * v + lr * local_lr * (g + weight_decay * w)
        w -= v

    The global ``lr`` sits inside the momentum buffer, as in the paper. Biases and
    normalisation parameters (tensors with at most one dimension) are by default excluded
    (``exclude_bias_and_norm=True``): they get neither the trust ratio nor weight decay, i.e.
    plain momentum SGD, as in the common large-batch recipes. A group may set
    ``exclude_bias_and_norm`` itself.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        eps: float = 0.0,
        exclude_bias_and_norm: bool = True,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            eps=eps,
            exclude_bias_and_norm=exclude_bias_and_norm,
        )
        super().__init__(params, defaults)

    non_negative = ("lr", "momentum", "weight_decay", "eta", "eps")

    def _update(self, group: dict[str, Any], p: Tensor, grad: np.ndarray, state: dict[str, Any]) -> None:
        fast = kernels.wanted(p.data)  # numba: both norms in one pass, then the update in one pass
        if group["exclude_bias_and_norm"] and excluded_from_adaptation(p):
            scale, wd = group["lr"], 0.0
        else:
            wd = group["weight_decay"]
            norms = kernels.optim.norms(p.data, grad) if fast else None
            w_norm, g_norm = norms or (float(np.linalg.norm(p.data)), float(np.linalg.norm(grad)))
            scale = group["lr"] * trust_ratio(w_norm, g_norm, group["eta"], wd, group["eps"])
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = np.zeros_like(p.data)
        if fast and kernels.optim.lars(p.data, grad, buf, scale, wd, group["momentum"]):
            return
        buf *= group["momentum"]
        buf += scale * (grad + wd * p.data if wd else grad)
        p.data -= buf
