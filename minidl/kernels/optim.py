"""Fused optimizer updates: one pass over each parameter instead of one numpy pass per operator.

The references in :mod:`minidl.optim` write, e.g., Adam as six array expressions, each a full
pass with a temporary. The kernels below do the same arithmetic in the same order, with the
hyperparameters in the parameter's dtype as numpy's weak scalars would be, so float32 results
match the references to the last bit or nearly (tests compare them). Norms (LARS, LAMB) are
accumulated in float64.

The optimizers create and count their state (Adam and LAMB through
:func:`minidl.optim.optimizer.adam_moments`) before calling here, so the numpy reference that
runs when a kernel declines finds the same state. Each entry point updates ``param`` (and the
moment or momentum arrays) in place and returns True, or returns False without touching
anything when the arrays are not contiguous or dtypes differ. Adam's and LAMB's moment updates
are one inlined helper, :func:`_moments`.
"""

from __future__ import annotations

import math
from typing import Any

import numba
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


@numba.njit(inline="always", cache=True)
def _moments(m, v, i, d, omb1, b2, omb2):  # pragma: no cover (compiled)
    """Adam's moment updates of element i (as :func:`minidl.optim.optimizer.update_moments`); returns both."""
    mi = m[i] + omb1 * (d - m[i])
    vi = v[i] * b2 + omb2 * d * d
    m[i] = mi
    v[i] = vi
    return mi, vi


@kernel(lambda f: void(f[::1], ro(f[::1]), f[::1], f[::1], f[::1], f, f, f, f, f, f, f, boolean, boolean, boolean))
def _adam(
    p, g, m, v, vmax, omb1, b2, omb2, step_size, bc2_sqrt, eps, wd, decoupled, amsgrad, maximize
):  # pragma: no cover
    for i in range(p.size):
        d = -g[i] if maximize else g[i]
        if decoupled:
            p[i] = p[i] * wd
        elif wd != 0:
            d = d + wd * p[i]
        mi, vi = _moments(m, v, i, d, omb1, b2, omb2)
        if amsgrad:  # np.maximum: a NaN on either side wins
            vm = vi if vi > vmax[i] or vi != vi else vmax[i]
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


@kernel(lambda f: types.UniTuple(float64, 2)(f[::1], ro(f[::1]), f[::1], f[::1], f[::1], f, f, f, f, f, f, f))
def _lamb_update(p, g, m, v, u, omb1, b2, omb2, bc1, bc2, eps, wd):  # pragma: no cover
    sw = 0.0
    su = 0.0
    for i in range(p.size):
        mi, vi = _moments(m, v, i, g[i], omb1, b2, omb2)
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
    m: np.ndarray,
    v: np.ndarray,
    vmax: np.ndarray | None,
    t: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
) -> bool:
    """Adam/AdamW's step ``t`` on one parameter (see :class:`minidl.optim.Adam`), moments ``m``, ``v`` (and
    AMSGrad's ``vmax``) updated in place."""
    b1, b2 = betas
    flat = _flat(param, grad, m, v, v if vmax is None else vmax)
    if flat is None:
        return False
    p, g, mf, vf, vm = flat
    # decoupled decay multiplies the parameter by (1 - lr * wd); coupled decay adds wd * p to the gradient
    decoupled = decoupled and bool(weight_decay)
    wd = 1 - lr * weight_decay if decoupled else weight_decay
    _adam(
        p,
        g,
        mf,
        vf,
        vm,
        1 - b1,
        b2,
        1 - b2,
        lr / (1 - b1**t),
        math.sqrt(1 - b2**t),
        eps,
        wd,
        decoupled,
        vmax is not None,
        maximize,
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
    m: np.ndarray,
    v: np.ndarray,
    t: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    adapt: bool,
) -> bool:
    """LAMB's step ``t`` on one parameter (see :class:`minidl.optim.LAMB`); ``adapt=False`` for excluded parameters."""
    b1, b2 = betas
    flat = _flat(param, grad, m, v)
    if flat is None:
        return False
    p, g, mf, vf = flat
    u = np.empty_like(p)
    w_norm, u_norm = _lamb_update(
        p, g, mf, vf, u, 1 - b1, b2, 1 - b2, 1 - b1**t, 1 - b2**t, eps, weight_decay if adapt else 0.0
    )
    ratio = w_norm / u_norm if adapt and w_norm > 0 and u_norm > 0 else 1.0
    _axpy(p, u, lr * ratio)
    return True
