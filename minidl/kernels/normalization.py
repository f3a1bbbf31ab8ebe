"""Batch norm and layer norm kernels: statistics, normalisation and affine, and the backward, in few passes.

The references (:mod:`minidl.ops.normalization`) make about ten full-size passes and
temporaries per forward and backward (``x - mean``, its square, the mean of that, ``xhat``,
``xhat * w``, ``+ b``, ...). Here the forward reads the input three times (sum, squared
deviations, normalise) and the backward twice (two sums per channel or row, then the input
gradient); batch norm in training does all three passes one channel at a time, so the second
and third read the channel from cache (each (N, S) channel of the ResNet block is 128 KiB).
Sums accumulate in float64 (reassociation allowed, so the sums vectorise: 5x faster on the
statistics, and deterministic for a given build). Batch norm works on the input viewed as (N, C, S) with S the
product of the spatial dims; layer norm on rows of the trailing normalised dims.

With several BLAS threads, batch norm's channels are shared out among them
(:func:`minidl.kernels.workers.share`): each channel's sums run in the same order on one thread,
so the results are bitwise what one thread computes.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import boolean, float64, int64, void

from minidl.kernels.jit import REDUCE, contiguous, kernel
from minidl.kernels.jit import readonly as ro
from minidl.kernels.workers import share


@numba.njit(nogil=True, cache=True, fastmath=set(REDUCE))
def _stats_of(x, ch):  # pragma: no cover (compiled)
    """Mean and biased variance of channel ``ch`` of ``x`` (N, C, S), accumulated in float64."""
    n, _, s = x.shape
    count = n * s
    total = 0.0
    for b in range(n):
        row = x[b, ch]
        for q in range(s):
            total += row[q]
    m = total / count
    sq = 0.0
    for b in range(n):
        row = x[b, ch]
        for q in range(s):
            d = row[q] - m
            sq += d * d
    return m, sq / count


@numba.njit(nogil=True, cache=True)
def _normalize_channel(x, ch, m, r, w, a, xhat, out):  # pragma: no cover (compiled)
    for b in range(x.shape[0]):
        src, xh, dst = x[b, ch], xhat[b, ch], out[b, ch]
        for q in range(x.shape[2]):
            v = (src[q] - m) * r
            xh[q] = v
            dst[q] = v * w + a


@kernel(
    lambda f: void(
        ro(f[:, :, ::1]),
        ro(f[::1]),
        ro(f[::1]),
        ro(f[::1]),
        f[::1],
        f[::1],
        f[::1],
        f[:, :, ::1],
        f[:, :, ::1],
        int64,
        int64,
    )
)
def _channel_forward(x, weight, bias, consts, mean, var, invstd, xhat, out, c0, c1):  # pragma: no cover (compiled)
    """Training batch norm of channels c0 .. c1, each read from memory once: its statistics (two passes,
    the second from cache), ``invstd`` with the reference's arithmetic in the input's dtype
    (``consts`` = [eps, 1]), then normalise and affine."""
    for ch in range(c0, c1):
        m, v = _stats_of(x, ch)
        mean[ch], var[ch] = m, v  # rounded to the dtype, as the reference's statistics are
        invstd[ch] = consts[1] / np.sqrt(var[ch] + consts[0])
        _normalize_channel(x, ch, mean[ch], invstd[ch], weight[ch], bias[ch], xhat, out)


@kernel(
    lambda f: void(
        ro(f[:, :, ::1]), ro(f[::1]), ro(f[::1]), ro(f[::1]), ro(f[::1]), f[:, :, ::1], f[:, :, ::1], int64, int64
    )
)
def _channel_normalize(x, mean, invstd, weight, bias, xhat, out, c0, c1):  # pragma: no cover (compiled)
    for ch in range(c0, c1):
        _normalize_channel(x, ch, mean[ch], invstd[ch], weight[ch], bias[ch], xhat, out)


@kernel(
    lambda f: void(
        ro(f[:, :, ::1]),
        ro(f[:, :, ::1]),
        ro(f[::1]),
        ro(f[::1]),
        boolean,
        boolean,
        f[:, :, ::1],
        f[::1],
        f[::1],
        int64,
        int64,
    ),
    fastmath=REDUCE,
)
def _channel_backward(g, xhat, invstd, weight, training, want_gx, gx, gw, gb, c0, c1):  # pragma: no cover (compiled)
    n, _, s = g.shape
    count = n * s
    for ch in range(c0, c1):
        sum_g = 0.0
        sum_gx = 0.0
        for b in range(n):
            gr, xr = g[b, ch], xhat[b, ch]
            for q in range(s):
                sum_g += gr[q]
                sum_gx += gr[q] * xr[q]
        gw[ch] = sum_gx
        gb[ch] = sum_g
        if not want_gx:
            continue
        scale = weight[ch] * invstd[ch]
        if training:
            mean_g = sum_g / count
            mean_gx = sum_gx / count
            for b in range(n):
                gr, xr, out = g[b, ch], xhat[b, ch], gx[b, ch]
                for q in range(s):
                    out[q] = (gr[q] - mean_g - xr[q] * mean_gx) * scale
        else:
            for b in range(n):
                gr, out = g[b, ch], gx[b, ch]
                for q in range(s):
                    out[q] = gr[q] * scale


@kernel(lambda f: void(ro(f[:, ::1]), float64[::1], float64[::1]), fastmath=REDUCE)
def _row_stats(x, mean, var):  # pragma: no cover (compiled)
    m, d = x.shape
    for i in range(m):
        row = x[i]
        total = 0.0
        for q in range(d):
            total += row[q]
        mu = total / d
        sq = 0.0
        for q in range(d):
            dev = row[q] - mu
            sq += dev * dev
        mean[i] = mu
        var[i] = sq / d


@kernel(lambda f: void(ro(f[:, ::1]), ro(f[::1]), ro(f[::1]), ro(f[::1]), ro(f[::1]), f[:, ::1], f[:, ::1]))
def _row_normalize(x, mean, invstd, weight, bias, xhat, out):  # pragma: no cover (compiled)
    m, d = x.shape
    for i in range(m):
        mu, r = mean[i], invstd[i]
        row, xh, dst = x[i], xhat[i], out[i]
        for q in range(d):
            v = (row[q] - mu) * r
            xh[q] = v
            dst[q] = v * weight[q] + bias[q]


@kernel(
    lambda f: void(
        ro(f[:, ::1]), ro(f[:, ::1]), ro(f[::1]), ro(f[::1]), boolean, f[:, ::1], float64[::1], float64[::1]
    ),
    fastmath=REDUCE,
)
def _row_backward(g, xhat, invstd, weight, want_gx, gx, gw, gb):  # pragma: no cover (compiled)
    m, d = g.shape
    gw[:] = 0
    gb[:] = 0
    for i in range(m):
        gr, xr = g[i], xhat[i]
        sum_d = 0.0
        sum_dx = 0.0
        for q in range(d):
            dx = gr[q] * weight[q]
            sum_d += dx
            sum_dx += dx * xr[q]
            gw[q] += gr[q] * xr[q]
            gb[q] += gr[q]
        if want_gx:
            mean_d = sum_d / d
            mean_dx = sum_dx / d
            r = invstd[i]
            out = gx[i]
            for q in range(d):
                out[q] = (gr[q] * weight[q] - mean_d - xr[q] * mean_dx) * r


def _spatial(shape: tuple[int, ...]) -> int:
    """Product of the dims after (N, C): explicit, because ``reshape(n, c, -1)`` fails for an empty batch."""
    return int(np.prod(shape[2:], dtype=np.int64))


def _vector(v: np.ndarray | None, size: int, fill: float, dtype: np.dtype) -> np.ndarray:
    return np.full(size, fill, dtype) if v is None else contiguous(v, dtype=dtype).reshape(-1)


def batch_normalize(
    x: np.ndarray, mean: np.ndarray, invstd: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``xhat = (x - mean) * invstd`` per channel (dim 1) and ``out = xhat * weight + bias``."""
    x = contiguous(x)
    n, c = x.shape[:2]
    sp = _spatial(x.shape)
    dt = x.dtype
    xhat = np.empty_like(x)
    out = np.empty_like(x)
    args = (
        x.reshape(n, c, sp),
        _vector(mean, c, 0, dt),
        _vector(invstd, c, 1, dt),
        _vector(weight, c, 1, dt),
        _vector(bias, c, 0, dt),
        xhat.reshape(n, c, sp),
        out.reshape(n, c, sp),
    )
    share(lambda s: _channel_normalize(*args, s.start, s.stop), c, 3 * x.size)  # read x, write xhat, out
    return xhat, out


def batch_norm_train(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training batch norm in one pass over memory per channel: ``(mean, var, invstd, xhat, out)``,
    the statistics (C,) in ``x``'s dtype (``var`` biased), ``invstd = 1 / sqrt(var + eps)``."""
    x = contiguous(x)
    n, c = x.shape[:2]
    sp = _spatial(x.shape)
    dt = x.dtype
    mean, var, invstd = np.empty(c, dt), np.empty(c, dt), np.empty(c, dt)
    xhat = np.empty_like(x)
    out = np.empty_like(x)
    args = (
        x.reshape(n, c, sp),
        _vector(weight, c, 1, dt),
        _vector(bias, c, 0, dt),
        np.array([eps, 1], dt),
        mean,
        var,
        invstd,
        xhat.reshape(n, c, sp),
        out.reshape(n, c, sp),
    )
    share(lambda s: _channel_forward(*args, s.start, s.stop), c, 5 * x.size)  # x read 3 times, 2 written
    return mean, var, invstd, xhat, out


def batch_norm_backward(
    g: np.ndarray, xhat: np.ndarray, invstd: np.ndarray, weight: np.ndarray | None, training: bool, needs: Any
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of batch norm for (input, weight, bias), None where ``needs`` is False, from the saved ``xhat``."""
    g = contiguous(g)
    n, c = g.shape[:2]
    sp = _spatial(g.shape)
    dt = g.dtype
    gx = np.empty_like(g) if needs[0] else np.empty((0, 0, 0), dt)
    gw = np.empty(c, dt)
    gb = np.empty(c, dt)
    args = (
        g.reshape(n, c, sp),
        contiguous(xhat).reshape(n, c, sp),
        _vector(invstd, c, 1, dt),
        _vector(weight, c, 1, dt),
        training,
        bool(needs[0]),
        gx.reshape(n, c, sp) if needs[0] else gx,
        gw,
        gb,
    )
    share(lambda s: _channel_backward(*args, s.start, s.stop), c, 5 * g.size)  # g, xhat read twice, gx written
    return tuple(a if need else None for a, need in zip((gx, gw, gb), needs))


def inverse_std(var: np.ndarray, eps: float, dtype: np.dtype) -> np.ndarray:
    """``1 / sqrt(var + eps)`` with the references' arithmetic (in ``dtype``)."""
    return (1.0 / np.sqrt(var.astype(dtype) + eps)).astype(dtype, copy=False)


def layer_norm(
    x: np.ndarray, k: int, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xhat, invstd with the reference's keepdims shape, out) of layer norm over the last ``k`` dims."""
    x = contiguous(x)
    lead = x.shape[: x.ndim - k]
    d = int(np.prod(x.shape[x.ndim - k :]))
    rows = x.reshape(-1, d)
    dt = x.dtype
    mean = np.empty(rows.shape[0])
    var = np.empty(rows.shape[0])
    _row_stats(rows, mean, var)
    invstd = inverse_std(var, eps, dt)
    xhat = np.empty_like(x)
    out = np.empty_like(x)
    _row_normalize(
        rows,
        mean.astype(dt),
        invstd,
        _vector(weight, d, 1, dt),
        _vector(bias, d, 0, dt),
        xhat.reshape(-1, d),
        out.reshape(-1, d),
    )
    return xhat, invstd.reshape(lead + (1,) * k), out


def layer_norm_backward(
    g: np.ndarray, xhat: np.ndarray, invstd: np.ndarray, weight: np.ndarray | None, k: int, needs: Any
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of layer norm over the last ``k`` dims for (input, weight, bias), None where ``needs`` is False."""
    g = contiguous(g)
    tail = g.shape[g.ndim - k :]
    d = int(np.prod(tail))
    dt = g.dtype
    gx = np.empty_like(g) if needs[0] else np.empty((0, d), dt)
    gw = np.empty(d)
    gb = np.empty(d)
    _row_backward(
        g.reshape(-1, d),
        contiguous(xhat).reshape(-1, d),
        contiguous(invstd).reshape(-1),
        _vector(weight, d, 1, dt),
        bool(needs[0]),
        gx.reshape(-1, d),
        gw,
        gb,
    )
    grads = (gx, gw.astype(dt).reshape(tail), gb.astype(dt).reshape(tail))
    return tuple(a if need else None for a, need in zip(grads, needs))
