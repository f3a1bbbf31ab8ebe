"""Fused softmax cross-entropy: log-softmax and the per-row loss in one pass over the logits, and
``softmax - target`` (with class weights and label smoothing) in one pass for the backward.

The reference (:class:`minidl.ops.loss.CrossEntropy`) spends a dozen numpy calls per direction;
for a classifier's (128, 10) logits that is mostly call overhead.
"""

from __future__ import annotations

import math

import numpy as np
from numba import int64, void

from minidl.kernels.jit import contiguous, kernel
from minidl.kernels.jit import readonly as ro


@kernel(lambda f: void(ro(f[:, ::1]), ro(int64[::1]), ro(f[::1]), ro(f[::1]), ro(f[::1]), f, f[:, ::1], f[::1]))
def _cross_entropy(z, target, valid, wt, weight, eps, logp, loss):  # pragma: no cover (compiled)
    m, c = z.shape
    keep = 1 - eps
    share = eps / c
    for i in range(m):
        row, out = z[i], logp[i]
        top = -math.inf
        for k in range(c):
            if row[k] > top:
                top = row[k]
        total = 0.0
        for k in range(c):
            total += math.exp(row[k] - top)
        lse = math.log(total)
        smooth = 0.0
        for k in range(c):
            v = (row[k] - top) - lse
            out[k] = v
            smooth += v * weight[k]
        loss[i] = -keep * wt[i] * out[target[i]] - share * valid[i] * smooth


@kernel(lambda f: void(ro(f[:, ::1]), ro(int64[::1]), ro(f[::1]), ro(f[::1]), ro(f[::1]), ro(f[::1]), f, f[:, ::1]))
def _cross_entropy_backward(logp, target, valid, wt, coef, weight, eps, dz):  # pragma: no cover (compiled)
    m, c = logp.shape
    keep = 1 - eps
    share = eps / c
    wsum = 0.0
    for k in range(c):
        wsum += weight[k]
    for i in range(m):
        a = (keep * wt[i] + share * wsum * valid[i]) * coef[i]
        smooth = share * valid[i] * coef[i]
        row, out = logp[i], dz[i]
        for k in range(c):
            out[k] = math.exp(row[k]) * a - smooth * weight[k]
        out[target[i]] -= keep * wt[i] * coef[i]


def _weights(weight: np.ndarray | None, c: int, dtype: np.dtype) -> np.ndarray:
    return np.ones(c, dtype) if weight is None else contiguous(weight, dtype=dtype)


def cross_entropy(
    z: np.ndarray, target: np.ndarray, valid: np.ndarray, wt: np.ndarray, weight: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(log-softmax of the rows of ``z`` (M, C), per-row loss (M,)) with class weights and label
    smoothing ``eps``; ``target`` are safe class indices, ``valid``/``wt`` the per-row masks and
    weights of :func:`minidl.ops.loss._ce_terms`."""
    z = contiguous(z)
    m, c = z.shape
    dt = z.dtype
    logp = np.empty_like(z)
    loss = np.empty(m, dt)
    _cross_entropy(
        z,
        contiguous(target, dtype=np.int64),
        contiguous(valid, dtype=dt),
        contiguous(wt, dtype=dt),
        _weights(weight, c, dt),
        eps,
        logp,
        loss,
    )
    return logp, loss


def cross_entropy_backward(
    logp: np.ndarray,
    target: np.ndarray,
    valid: np.ndarray,
    wt: np.ndarray,
    coef: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
) -> np.ndarray:
    """Gradient (M, C) of ``sum(coef * loss)`` with respect to the logits, from the saved log-softmax."""
    m, c = logp.shape
    dt = logp.dtype
    dz = np.empty_like(logp)
    _cross_entropy_backward(
        contiguous(logp),
        contiguous(target, dtype=np.int64),
        contiguous(valid, dtype=dt),
        contiguous(wt, dtype=dt),
        contiguous(np.broadcast_to(coef, (m,)), dtype=dt),
        _weights(weight, c, dt),
        eps,
        dz,
    )
    return dz
