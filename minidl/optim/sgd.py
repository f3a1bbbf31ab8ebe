"""Stochastic gradient descent with momentum, exactly PyTorch's formulation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl import kernels
from minidl.optim.optimizer import Optimizer
from minidl.tensor import Tensor


class SGD(Optimizer):
    """``g += weight_decay * p``; ``v = momentum * v + (1 - dampening) * g``; ``p -= lr * v``.

    As ``torch.optim.SGD``: the first step sets ``v = g`` (no dampening), ``nesterov`` steps
    along ``g + momentum * v``, and ``maximize`` ascends instead.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    non_negative = ("lr", "momentum", "weight_decay")

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")

    def _update(self, group: dict[str, Any], p: Tensor, grad: np.ndarray, state: dict[str, Any]) -> None:
        hyper = (group[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"))
        if kernels.wanted(p.data) and kernels.optim.sgd(p.data, grad, state, *hyper):
            return  # numba: the update below in one pass
        d_p = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            d_p = d_p + group["weight_decay"] * p.data
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d_p, dtype=p.dtype, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * d_p
            d_p = d_p + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * d_p
