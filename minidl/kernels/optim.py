"""Fused optimizer updates: one pass over each parameter instead of one numpy pass per operator.

The references in :mod:`minidl.optim` write, e.g., Adam as six array expressions, each a full
pass with a temporary. The kernels below do the same arithmetic in the same order, with the
hyperparameters in the parameter's dtype as numpy's weak scalars would be, so float32 results
match the references to the last bit or nearly (tests compare them). Norms (LARS, LAMB) are
accumulated in float64.

Each entry point updates ``param`` (and the state arrays) in place and returns True, or returns
False without touching anything when the arrays are not contiguous or dtypes differ; the
optimizer then runs its numpy reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import boolean, float64, types, void

from minidl.kernels.jit import REDUCE, kernel
from minidl.kernels.jit import readonly as ro


@kernel(lambda f: void(f[::1], ro(f[::1]), f[::1], f, f, f, f, boolean, boolean, boolean, boolean))
def _sgd(p, g, buf, lr, momentum, keep, wd, use_momentum, nesterov, maximize, first):  # pragma: no cover
    for i in range(p.size):
        d = -g[i] if maximize else g[i]
        if wd != 0:
            d = d + wd * p[i]
        if use_momentum:
            if first:
                b = d
            else:
                b = buf[i] * momentum + keep * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@kernel(
    lambda f: void(f[::1], ro(f[::1]), f[::1], f[::1], f[::1], f, f, f, f, f, f, f, boolean, boolean, boolean, boolean)
)
def _adam(
    p, g, m, v, vmax, omb1, b2, omb2, step_size, bc2_sqrt, eps, wd, decoupled, amsgrad, maximize, first_max
):  # pragma: no cover
    for i in range(p.size):
        d = -g[i] if maximize else g[i]
        if decoupled:
            p[i] = p[i] * wd
        elif wd != 0:
            d = d + wd * p[i]
        mi = m[i] + omb1 * (d - m[i])
        vi = v[i] * b2 + omb2 * d * d
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vm = vi if first_max or vi > vmax[i] else vmax[i]
            vmax[i] = vm
            vi = vm
        p[i] -= step_size * (mi / (math.sqrt(vi) / bc2_sqrt + eps))


@kernel(lambda f: types.UniTuple(float64, 2)(ro(f[::1]), ro(f[::1])), fastmath=REDUCE)
def _norms(a, b):  # pragma: no cover
    sa = 0.0
    sb = 0.0
    for i in range(a.size):
        sa += a[i] * a[i]
        sb += b[i] * b[i]
    return math.sqrt(sa), math.sqrt(sb)


@kernel(lambda f: void(f[::1], ro(f[::1]), f[::1], f, f, f))
def _lars(p, g, buf, scale, wd, momentum):  # pragma: no cover
    for i in range(p.size):
        d = g[i] + wd * p[i] if wd != 0 else g[i]
        b = buf[i] * momentum + scale * d
        buf[i] = b
        p[i] -= b


@kernel(lambda f: types.UniTuple(float64, 2)(f[::1], ro(f[::1]), f[::1], f[::1], f[::1], f, f, f, f, f, f, f, f))
def _lamb_update(p, g, m, v, u, b1, omb1, b2, omb2, bc1, bc2, eps, wd):  # pragma: no cover
    sw = 0.0
    su = 0.0
    for i in range(p.size):
        mi = m[i] * b1 + omb1 * g[i]
        vi = v[i] * b2 + omb2 * g[i] * g[i]
        m[i] = mi
        v[i] = vi
        ui = (mi / bc1) / (math.sqrt(vi / bc2) + eps)
        if wd != 0:
            ui = ui + wd * p[i]
        u[i] = ui
        sw += p[i] * p[i]
        su += ui * ui
    return math.sqrt(sw), math.sqrt(su)


@kernel(lambda f: void(f[::1], ro(f[::1]), f))
def _axpy(p, u, scale):  # pragma: no cover
    for i in range(p.size):
        p[i] -= scale * u[i]


def _flat(*arrays: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Flat views of same-dtype C-contiguous arrays, or None (the caller then uses numpy)."""
    dt = arrays[0].dtype
    if any(a.dtype != dt or not a.flags.c_contiguous for a in arrays):
        return None
    return tuple(a.reshape(-1) for a in arrays)


def sgd(
    param: np.ndarray,
    grad: np.ndarray,
    state: dict[str, Any],
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> bool:
    """``torch.optim.SGD``'s update of one parameter (see :class:`minidl.optim.SGD`)."""
    flat = _flat(param, grad)
    if flat is None:
        return False
    buf = state.get("momentum_buffer") if momentum else None
    first = bool(momentum) and buf is None
    if first:
        buf = np.empty_like(param)
    if buf is not None and _flat(param, buf) is None:
        return False
    p, g = flat
    _sgd(
        p,
        g,
        p if buf is None else buf.reshape(-1),
        lr,
        momentum,
        1 - dampening,
        weight_decay,
        bool(momentum),
        nesterov,
        maximize,
        first,
    )
    if first:
        state["momentum_buffer"] = buf
    return True


def adam(
    param: np.ndarray,
    grad: np.ndarray,
    state: dict[str, Any],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
) -> bool:
    """Adam/AdamW's update of one parameter (see :class:`minidl.optim.Adam`); ``state`` as the reference keeps it."""
    b1, b2 = betas
    if _flat(param, grad) is None:
        return False
    if not state:
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(param)
        state["exp_avg_sq"] = np.zeros_like(param)
    first_max = amsgrad and "max_exp_avg_sq" not in state
    if first_max:
        state["max_exp_avg_sq"] = np.zeros_like(param)
    vmax = state["max_exp_avg_sq"] if amsgrad else state["exp_avg_sq"]
    flat = _flat(param, grad, state["exp_avg"], state["exp_avg_sq"], vmax)
    if flat is None:
        return False
    state["step"] += 1
    t = state["step"]
    p, g, m, v, vm = flat
    # decoupled decay multiplies the parameter by (1 - lr * wd); coupled decay adds wd * p to the gradient
    decoupled = decoupled and bool(weight_decay)
    wd = 1 - lr * weight_decay if decoupled else weight_decay
    _adam(
        p,
        g,
        m,
        v,
        vm,
        1 - b1,
        b2,
        1 - b2,
        lr / (1 - b1**t),
        math.sqrt(1 - b2**t),
        eps,
        wd,
        decoupled,
        amsgrad,
        maximize,
        first_max,
    )
    return True


def norms(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """(||a||, ||b||) in one pass (float64 accumulation), or None if the arrays cannot be fused."""
    flat = _flat(a, b)
    return None if flat is None else _norms(*flat)


def lars(
    param: np.ndarray, grad: np.ndarray, buf: np.ndarray, scale: float, weight_decay: float, momentum: float
) -> bool:
    """LARS's momentum step ``buf = momentum * buf + scale * (grad + wd * param); param -= buf``."""
    flat = _flat(param, grad, buf)
    if flat is None:
        return False
    _lars(*flat, scale, weight_decay, momentum)
    return True


def lamb(
    param: np.ndarray,
    grad: np.ndarray,
    state: dict[str, Any],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    adapt: bool,
) -> bool:
    """LAMB's update of one parameter (see :class:`minidl.optim.LAMB`); ``adapt=False`` for excluded parameters."""
    b1, b2 = betas
    if _flat(param, grad) is None:
        return False
    if not state:
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(param)
        state["exp_avg_sq"] = np.zeros_like(param)
    flat = _flat(param, grad, state["exp_avg"], state["exp_avg_sq"])
    if flat is None:
        return False
    state["step"] += 1
    t = state["step"]
    p, g, m, v = flat
    u = np.empty_like(p)
    w_norm, u_norm = _lamb_update(
        p, g, m, v, u, b1, 1 - b1, b2, 1 - b2, 1 - b1**t, 1 - b2**t, eps, weight_decay if adapt else 0.0
    )
    ratio = w_norm / u_norm if adapt and w_norm > 0 and u_norm > 0 else 1.0
    _axpy(p, u, lr * ratio)
    return True
