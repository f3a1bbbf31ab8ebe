"""Every op: forward against an independent numpy reference, backward with gradcheck (float64).

Shapes cover broadcasting, empty and size-1 dimensions, 0-d tensors and negative axes. A subset
also runs gradgradcheck (second derivatives through ``create_graph``). The references are
written directly from each op's definition (loops where that is clearest), never by calling
minidl.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minidl
import minidl.functional as F
from minidl import gradcheck, gradgradcheck
from minidl.ops.attention import self_attention

# var/std over a single element divides by zero on purpose (the result must be NaN, as in numpy)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Degrees of freedom:RuntimeWarning", "ignore:invalid value:RuntimeWarning"
)

_erf = np.vectorize(math.erf, otypes=[np.float64])


@dataclass
class Case:
    """One op application: ``fn`` on minidl tensors, ``ref`` on numpy arrays, input shapes and value domains."""

    id: str
    fn: Callable
    ref: Callable
    shapes: list[tuple[int, ...]]
    domain: list[str] = field(default_factory=list)  # per input: "any", "pos" (> 0.5), "away" (|x| > 0.2)
    double: bool = False  # also run gradgradcheck
    atol: float = 1e-10


def _value(rng: np.random.Generator, shape: tuple[int, ...], domain: str) -> np.ndarray:
    a = rng.standard_normal(shape)
    if domain == "pos":
        return np.abs(a) + 0.5
    if domain == "away":  # keep clear of kinks (relu, abs, clip) so central differences are exact
        return np.sign(a + 1e-12) * (np.abs(a) + 0.2)
    if domain == "distinct":  # no ties (max, min, maximum)
        return rng.permutation(np.arange(int(np.prod(shape)), dtype=np.float64)).reshape(shape) * 0.37 - 1.0
    return a


def _arrays(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    doms = case.domain or ["any"] * len(case.shapes)
    return [_value(rng, s, d) for s, d in zip(case.shapes, doms)]


# ----------------------------------------------------------------------------- references
def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True)) if x.size else x
    return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis):
    return np.log(_np_softmax(x, axis))


def _np_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct definition: out[n, o, y, x] = sum_{c, i, j} xpad[n, g*C/g + c, y*s + i*d, x*s + j*d] w[o, c, i, j]."""
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    ho = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    wo = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for y in range(ho):
            for xx in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        patch = xp[:, g * cg : (g + 1) * cg, y * s[0] + i * d[0], xx * s[1] + j * d[1]]
                        out[:, oc, y, xx] += patch @ w[oc, :, i, j]
    if b is not None:
        out += b[None, :, None, None]
    return out


def _np_pool(x, k, s, p, reduce, pad_value, divisor=None):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, ho, wo))
    for y in range(ho):
        for xx in range(wo):
            win = xp[:, :, y * s : y * s + k, xx * s : xx * s + k]
            out[:, :, y, xx] = reduce(win.reshape(n, c, -1), axis=-1)
            if divisor is not None:
                out[:, :, y, xx] /= divisor(y, xx)
    return out


def _np_avg_pool_exclude_pad(x, k, s, p):
    h, w = x.shape[-2:]

    def count(y, xx):
        rows = min(y * s - p + k, h) - max(y * s - p, 0)
        cols = min(xx * s - p + k, w) - max(xx * s - p, 0)
        return rows * cols

    return _np_pool(x, k, s, p, np.sum, 0.0, count)


def _np_norm(x, axes, eps=1e-5):
    mu = x.mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def _np_ce(z, t, w=None, ignore=-100, smoothing=0.0, reduction="mean"):
    logp = _np_log_softmax(z, 1)
    m, c = z.shape
    w = np.ones(c) if w is None else w
    losses, weights = [], []
    for i in range(m):
        if t[i] == ignore:
            losses.append(0.0)
            weights.append(0.0)
            continue
        nll = -w[t[i]] * logp[i, t[i]]
        smooth = -(w * logp[i]).sum()
        losses.append((1 - smoothing) * nll + smoothing / c * smooth)
        weights.append(w[t[i]])
    losses = np.array(losses)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / np.sum(weights)


def _np_nll(logp, t, w):
    keep = t != -100
    rows = np.arange(len(t))[keep]
    return -(w[t[keep]] * logp[rows, t[keep]]).sum() / w[t[keep]].sum()


def _np_gelu(x):
    return x * 0.5 * (1 + _erf(x / np.sqrt(2)))


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


_T5 = np.array([0, 4, 2, -100, 1, 1, 3])
_IDS = np.array([[0, 3, 3], [5, 1, 0]])
_IDX = np.array([2, 0, 2, 1])  # repeated on purpose: backward must add, not overwrite
_MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, True, True]])
_GATHER = np.array([[0, 2, 2], [1, 1, 0], [3, 0, 1]])
_COND = np.array([[True, False, True, False]])

UNARY_SHAPES = [(3, 4), (0, 3), (1,), (), (2, 1, 3)]

UNARY: list[tuple[str, Callable, Callable, str, bool]] = [
    ("neg", lambda a: -a, np.negative, "any", False),
    ("exp", lambda a: a.exp(), np.exp, "any", True),
    ("log", lambda a: a.log(), np.log, "pos", True),
    ("sqrt", lambda a: a.sqrt(), np.sqrt, "pos", True),
    ("abs", lambda a: a.abs(), np.abs, "away", False),
    ("tanh", lambda a: a.tanh(), np.tanh, "any", True),
    ("sigmoid", lambda a: a.sigmoid(), _np_sigmoid, "any", True),
    ("relu", lambda a: a.relu(), lambda a: np.maximum(a, 0), "away", False),
    ("leaky_relu", lambda a: F.leaky_relu(a, 0.1), lambda a: np.where(a > 0, a, 0.1 * a), "away", False),
    ("gelu", F.gelu, _np_gelu, "any", True),
    (
        "gelu_tanh",
        lambda a: F.gelu(a, approximate="tanh"),
        lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))),
        "any",
        True,
    ),
    ("silu", F.silu, lambda a: a * _np_sigmoid(a), "any", True),
    ("softplus", lambda a: F.softplus(a, beta=2.0), lambda a: np.log1p(np.exp(2 * a)) / 2, "any", True),
    ("clip", lambda a: a.clip(-0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), "away", False),
    ("clamp_min", lambda a: minidl.clamp(a, min=0.1), lambda a: np.maximum(a, 0.1), "away", False),
    ("pow_scalar", lambda a: a**3, lambda a: a**3, "any", True),
    ("pow_square", lambda a: a**2, lambda a: a**2, "any", True),
    ("pow_fraction", lambda a: a**-1.5, lambda a: a**-1.5, "pos", True),
    ("rpow", lambda a: 2.0**a, lambda a: 2.0**a, "any", True),
    ("rsub", lambda a: 2.0 - a, lambda a: 2.0 - a, "any", False),
    ("rdiv", lambda a: 1.5 / a, lambda a: 1.5 / a, "pos", True),
    ("add_scalar", lambda a: a + 1, lambda a: a + 1, "any", False),
    ("clone", lambda a: a.clone(), np.copy, "any", False),
]

CASES: list[Case] = [
    Case(f"{name}{shape}", fn, ref, [shape], [dom], double=dbl and shape == (3, 4))
    for name, fn, ref, dom, dbl in UNARY
    for shape in UNARY_SHAPES
]

BROADCAST_PAIRS = [
    ((3, 4), (4,)),
    ((2, 1, 3), (4, 1)),
    ((0, 3), (1, 3)),
    ((), (2, 2)),
    ((1,), (1, 1)),
    ((2, 3), (2, 3)),
]
BINARY = [
    ("add", lambda a, b: a + b, np.add, ["any", "any"], False),
    ("sub", lambda a, b: a - b, np.subtract, ["any", "any"], False),
    ("mul", lambda a, b: a * b, np.multiply, ["any", "any"], True),
    ("div", lambda a, b: a / b, np.divide, ["any", "pos"], True),
    ("pow", lambda a, b: a**b, np.power, ["pos", "any"], True),
    ("maximum", minidl.maximum, np.maximum, ["distinct", "any"], False),
    ("minimum", minidl.minimum, np.minimum, ["distinct", "any"], False),
]
CASES += [
    Case(f"{name}{sa}{sb}", fn, ref, [sa, sb], dom, double=dbl and sa == (3, 4))
    for name, fn, ref, dom, dbl in BINARY
    for sa, sb in BROADCAST_PAIRS
]

MATMUL_SHAPES = [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,))]
MATMUL_SHAPES += [((2, 1, 3, 4), (5, 4, 2)), ((0, 4), (4, 2)), ((3, 0), (0, 2))]
CASES += [
    Case(f"matmul{sa}{sb}", lambda a, b: a @ b, np.matmul, [sa, sb], double=sa == (2, 3, 4)) for sa, sb in MATMUL_SHAPES
]

# reductions: axis None / int / negative / tuple, keepdims both ways, size-1 and empty dims
REDUCE_AXES = [((3, 4, 5), None), ((3, 4, 5), 0), ((3, 4, 5), -1), ((3, 4, 5), (0, -1)), ((1, 4), 0), ((2, 0, 3), -1)]
REDUCTIONS = [
    ("sum", lambda a, ax, k: a.sum(axis=ax, keepdims=k), lambda a, ax, k: a.sum(axis=ax, keepdims=k), "any"),
    ("mean", lambda a, ax, k: a.mean(axis=ax, keepdims=k), lambda a, ax, k: a.mean(axis=ax, keepdims=k), "any"),
    ("max", lambda a, ax, k: a.max(axis=ax, keepdims=k), lambda a, ax, k: a.max(axis=ax, keepdims=k), "distinct"),
    ("min", lambda a, ax, k: a.min(axis=ax, keepdims=k), lambda a, ax, k: a.min(axis=ax, keepdims=k), "distinct"),
    (
        "var",
        lambda a, ax, k: a.var(axis=ax, keepdims=k),
        lambda a, ax, k: a.var(axis=ax, keepdims=k, ddof=1),
        "any",
    ),
    (
        "var_ddof0",
        lambda a, ax, k: a.var(axis=ax, keepdims=k, ddof=0),
        lambda a, ax, k: a.var(axis=ax, keepdims=k),
        "any",
    ),
    (
        "std",
        lambda a, ax, k: a.std(dim=ax, keepdim=k),
        lambda a, ax, k: a.std(axis=ax, keepdims=k, ddof=1),
        "any",
    ),
    (
        "logsumexp",
        lambda a, ax, k: a.logsumexp(axis=ax, keepdims=k),
        lambda a, ax, k: np.log(np.exp(a).sum(axis=ax, keepdims=k)),
        "any",
    ),
]
for name, fn, ref, dom in REDUCTIONS:
    for shape, axis in REDUCE_AXES:
        if 0 in shape and name in ("max", "min", "var", "var_ddof0", "std") and axis is not None:
            reduced = [shape[a] for a in ((axis,) if isinstance(axis, int) else axis)]
            if 0 in reduced or name != "sum":
                continue  # empty reductions: covered by dedicated tests
        for keep in (False, True):
            CASES.append(
                Case(
                    f"{name}{shape}ax{axis}k{int(keep)}",
                    lambda a, fn=fn, axis=axis, keep=keep: fn(a, axis, keep),
                    lambda a, ref=ref, axis=axis, keep=keep: ref(a, axis, keep),
                    [shape],
                    [dom],
                    double=shape == (3, 4, 5) and axis == (0, -1) and not keep,
                )
            )

SHAPE_CASES = [
    Case("reshape", lambda a: a.reshape(4, -1), lambda a: a.reshape(4, -1), [(2, 3, 2)]),
    Case("reshape_empty", lambda a: a.reshape(-1, 3), lambda a: a.reshape(-1, 3), [(0, 3)]),
    Case("view_scalar", lambda a: a.view(1, 1), lambda a: a.reshape(1, 1), [()]),
    Case("flatten", lambda a: a.flatten(1, -1), lambda a: a.reshape(2, -1), [(2, 3, 2)]),
    Case("transpose", lambda a: a.transpose(-1, 0), lambda a: a.swapaxes(-1, 0), [(2, 3, 4)]),
    Case("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), [(2, 3, 4)]),
    Case("T", lambda a: a.T, lambda a: a.T, [(2, 3)]),
    Case("squeeze", lambda a: a.squeeze(), lambda a: a.squeeze(), [(1, 3, 1)]),
    Case("squeeze_dim", lambda a: a.squeeze(-1), lambda a: a.squeeze(-1), [(1, 3, 1)]),
    Case("unsqueeze", lambda a: a.unsqueeze(-2), lambda a: np.expand_dims(a, -2), [(2, 3)]),
    Case("expand", lambda a: a.expand(2, -1, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), [(3, 1)]),
    Case("broadcast_to", lambda a: a.broadcast_to((0, 3)), lambda a: np.broadcast_to(a, (0, 3)), [(1, 3)]),
    Case("getitem_basic", lambda a: a[1:, ::-2, None, ..., 0], lambda a: a[1:, ::-2, None, ..., 0], [(3, 4, 2)]),
    Case("getitem_int", lambda a: a[-1], lambda a: a[-1], [(3, 4)]),
    Case("getitem_array_dups", lambda a: a[_IDX], lambda a: a[_IDX], [(3, 2)], double=True),
    Case("getitem_array_2d", lambda a: a[_IDX, 1:], lambda a: a[_IDX, 1:], [(3, 3)]),
    Case("getitem_pairs", lambda a: a[_IDX, _IDX[::-1]], lambda a: a[_IDX, _IDX[::-1]], [(3, 3)]),
    Case("getitem_bool", lambda a: a[_MASK], lambda a: a[_MASK], [(3, 4)]),
    Case("getitem_tensor_index", lambda a: a[minidl.tensor(_IDX)], lambda a: a[_IDX], [(3, 2)]),
    Case("getitem_empty", lambda a: a[2:2], lambda a: a[2:2], [(3, 2)]),
    Case("gather", lambda a: a.gather(1, _GATHER), lambda a: np.take_along_axis(a, _GATHER, 1), [(3, 4)]),
    Case(
        "cat",
        lambda a, b, c: minidl.cat([a, b, c], dim=-1),
        lambda *xs: np.concatenate(xs, -1),
        [(2, 3), (2, 0), (2, 1)],
    ),
    Case(
        "cat_axis0",
        lambda a, b: minidl.concatenate([a, b], axis=0),
        lambda *xs: np.concatenate(xs, 0),
        [(1, 3), (2, 3)],
    ),
    Case("stack", lambda a, b: minidl.stack([a, b], dim=-1), lambda *xs: np.stack(xs, -1), [(2, 3), (2, 3)]),
    Case("split", lambda a: minidl.split(a, 2, dim=1)[-1], lambda a: a[:, 4:], [(2, 5)]),
    Case("split_sizes", lambda a: a.split([1, 0, 4], dim=-1)[2] * 2, lambda a: a[:, 1:] * 2, [(2, 5)]),
    Case("chunk", lambda a: a.chunk(3, dim=0)[1], lambda a: a[2:4], [(5, 2)]),
    Case(
        "pad_constant",
        lambda a: F.pad(a, (1, 2, 0, 1), value=0.5),
        lambda a: np.pad(a, ((0, 0), (0, 1), (1, 2)), constant_values=0.5),
        [(2, 3, 4)],
    ),
    Case("pad_crop", lambda a: F.pad(a, (-1, 1)), lambda a: np.pad(a[:, 1:], ((0, 0), (0, 1))), [(2, 4)]),
    Case(
        "pad_reflect",
        lambda a: F.pad(a, (2, 1), mode="reflect"),
        lambda a: np.pad(a, ((0, 0), (2, 1)), mode="reflect"),
        [(2, 4)],
    ),
    Case(
        "pad_replicate",
        lambda a: F.pad(a, (2, 3, 1, 0), mode="replicate"),
        lambda a: np.pad(a, ((0, 0), (1, 0), (2, 3)), mode="edge"),
        [(1, 2, 3)],
    ),
    Case(
        "pad_circular",
        lambda a: F.pad(a, (2, 1), mode="circular"),
        lambda a: np.pad(a, ((0, 0), (2, 1)), mode="wrap"),
        [(2, 3)],
    ),
    Case(
        "where",
        lambda a, b: minidl.where(_COND, a, b),
        lambda a, b: np.where(_COND, a, b),
        [(3, 4), (3, 1)],
        double=True,
    ),
    Case("masked_fill", lambda a: a.masked_fill(_MASK, -1.0), lambda a: np.where(_MASK, -1.0, a), [(3, 4)]),
    Case("max_dim", lambda a: a.max(dim=-1).values, lambda a: a.max(axis=-1), [(3, 4)], ["distinct"]),
    Case(
        "min_dim_keep",
        lambda a: a.min(dim=0, keepdim=True)[0],
        lambda a: a.min(0, keepdims=True),
        [(3, 4)],
        ["distinct"],
    ),
]
CASES += SHAPE_CASES

SOFTMAX_CASES = [
    Case(f"softmax{s}d{d}", lambda a, d=d: F.softmax(a, dim=d), lambda a, d=d: _np_softmax(a, d), [s], double=d == -1)
    for s, d in [((3, 5), -1), ((3, 5), 0), ((2, 1, 4), 1), ((0, 4), -1), ((4,), 0)]
] + [
    Case(
        f"log_softmax{s}d{d}",
        lambda a, d=d: F.log_softmax(a, dim=d),
        lambda a, d=d: _np_log_softmax(a, d),
        [s],
        double=d == -1,
    )
    for s, d in [((3, 5), -1), ((3, 5), 0), ((2, 1, 4), 1), ((0, 4), -1), ((4,), 0)]
]
CASES += SOFTMAX_CASES


def _np_self_attention(qkv: np.ndarray, heads: int, scale: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Per batch entry and head: softmax(q k^T scale + mask) v, written out with loops."""
    n, length, three_e = qkv.shape
    e = three_e // 3
    d = e // heads
    out = np.zeros((n, length, e))
    for b in range(n):
        for h in range(heads):
            q, k, v = (qkv[b, :, i * e + h * d : i * e + (h + 1) * d] for i in range(3))
            s = q @ k.T * scale + (0 if mask is None else np.broadcast_to(mask, (n, heads, length, length))[b, h])
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[b, :, h * d : (h + 1) * d] = (p / p.sum(axis=1, keepdims=True)) @ v
    return out


_ATTENTION_MASK = np.where(np.random.default_rng(5).random((2, 1, 4, 4)) < 0.3, -np.inf, 0.0)
_ATTENTION_MASK[..., 0] = 0.0  # every row keeps one key

LAYER_CASES = [
    Case(
        "self_attention",
        lambda x: self_attention(x, 2, 0.7),
        lambda x: _np_self_attention(x, 2, 0.7),
        [(2, 4, 12)],
        double=True,
    ),
    Case(
        "self_attention_masked",
        lambda x: self_attention(x, 3, 0.5, _ATTENTION_MASK),
        lambda x: _np_self_attention(x, 3, 0.5, _ATTENTION_MASK),
        [(2, 4, 9)],
        double=True,
    ),
    Case("linear", F.linear, lambda x, w, b: x @ w.T + b, [(4, 3), (2, 3), (2,)], double=True),
    Case("linear_nobias_3d", lambda x, w: F.linear(x, w), lambda x, w: x @ w.T, [(2, 4, 3), (5, 3)]),
    Case("linear_3d", F.linear, lambda x, w, b: x @ w.T + b, [(2, 4, 3), (5, 3), (5,)], double=True),
    Case("linear_empty_batch", F.linear, lambda x, w, b: x @ w.T + b, [(0, 3), (2, 3), (2,)]),
    Case("linear_no_features", F.linear, lambda x, w, b: x @ w.T + b, [(4, 0), (2, 0), (2,)]),
    Case(  # the second layer's input is the first's column-major output
        "linear_chain",
        lambda x, w1, b1, w2, b2: F.linear(F.linear(x, w1, b1).tanh(), w2, b2),
        lambda x, w1, b1, w2, b2: np.tanh(x @ w1.T + b1) @ w2.T + b2,
        [(3, 4), (5, 4), (5,), (2, 5), (2,)],  # 3 rows <= 4 features: a column-major first output
        double=True,
    ),
    Case("conv2d", F.conv2d, _np_conv2d, [(2, 3, 5, 5), (4, 3, 3, 3), (4,)], double=True),
    Case(
        "conv2d_stride_pad_dil_groups",
        lambda x, w: F.conv2d(x, w, None, stride=2, padding=(1, 2), dilation=(2, 1), groups=2),
        lambda x, w: _np_conv2d(x, w, None, (2, 2), (1, 2), (2, 1), 2),
        [(2, 4, 6, 5), (6, 2, 2, 3)],
    ),
    Case("conv2d_1x1", lambda x, w: F.conv2d(x, w), _np_conv2d, [(1, 3, 2, 2), (2, 3, 1, 1)]),
    Case(
        "conv2d_unbatched",
        lambda x, w: F.conv2d(x, w, padding=1),
        lambda x, w: _np_conv2d(x[None], w, padding=1)[0],
        [(2, 3, 3), (2, 2, 3, 3)],
    ),
    Case(
        "conv2d_same",
        lambda x, w: F.conv2d(x, w, padding="same"),
        lambda x, w: _np_conv2d(np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 1))), w),
        [(1, 2, 4, 4), (3, 2, 2, 3)],
    ),
    Case(
        "max_pool2d",
        lambda x: F.max_pool2d(x, 2),
        lambda x: _np_pool(x, 2, 2, 0, np.max, -np.inf),
        [(2, 3, 4, 5)],
        ["distinct"],
        double=True,
    ),
    Case(
        "max_pool2d_pad_stride",
        lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
        lambda x: _np_pool(x, 3, 2, 1, np.max, -np.inf),
        [(1, 2, 5, 6)],
        ["distinct"],
    ),
    Case(
        "avg_pool2d",
        lambda x: F.avg_pool2d(x, 2),
        lambda x: _np_pool(x, 2, 2, 0, np.mean, 0.0),
        [(2, 3, 4, 5)],
        double=True,
    ),
    Case(
        "avg_pool2d_pad_include",
        lambda x: F.avg_pool2d(x, 3, 2, 1),
        lambda x: _np_pool(x, 3, 2, 1, np.mean, 0.0),
        [(1, 2, 5, 6)],
    ),
    Case(
        "avg_pool2d_pad_exclude",
        lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
        lambda x: _np_avg_pool_exclude_pad(x, 3, 2, 1),
        [(1, 2, 5, 6)],
    ),
    Case(
        "adaptive_avg_pool2d_1",
        lambda x: F.adaptive_avg_pool2d(x, 1),
        lambda x: x.mean(axis=(-2, -1), keepdims=True),
        [(2, 3, 4, 5)],
    ),
    Case(
        "adaptive_avg_pool2d_uneven",
        lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
        lambda x: np.stack(
            [
                np.stack(
                    [
                        x[..., i * 5 // 2 : -(-(i + 1) * 5 // 2), j * 4 // 3 : -(-(j + 1) * 4 // 3)].mean((-2, -1))
                        for j in range(3)
                    ],
                    -1,
                )
                for i in range(2)
            ],
            -2,
        ),
        [(2, 3, 5, 4)],
    ),
    Case(
        "unfold",
        lambda x: F.unfold(x, 2, padding=1, stride=2),
        lambda x: np.stack(
            [
                np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))[:, :, i : i + 3 : 2, j : j + 5 : 2].reshape(1, 2, -1)
                for i in range(2)
                for j in range(2)
            ],
            2,
        ).reshape(1, 8, -1),
        [(1, 2, 3, 5)],
        double=True,
    ),
    Case(
        "batch_norm_train",
        lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
        lambda x, g, b: _np_norm(x, (0, 2, 3)) * g[None, :, None, None] + b[None, :, None, None],
        [(3, 2, 2, 3), (2,), (2,)],
        double=True,
    ),
    Case(
        "batch_norm_train_2d",
        lambda x: F.batch_norm(x, None, None, training=True),
        lambda x: _np_norm(x, (0,)),
        [(4, 3)],
    ),
    Case(
        "batch_norm_eval",
        lambda x, g, b: F.batch_norm(x, np.array([0.1, -0.2]), np.array([1.5, 0.5]), g, b),
        lambda x, g, b: (
            (x - np.array([0.1, -0.2])[:, None]) / np.sqrt(np.array([1.5, 0.5])[:, None] + 1e-5) * g[:, None]
            + b[:, None]
        ),
        [(3, 2, 4), (2,), (2,)],
        double=True,
    ),
    Case(
        "layer_norm",
        lambda x, g, b: F.layer_norm(x, (3, 4), g, b),
        lambda x, g, b: _np_norm(x, (-2, -1)) * g + b,
        [(2, 3, 4), (3, 4), (3, 4)],
        double=True,
    ),
    Case("layer_norm_plain", lambda x: F.layer_norm(x, 5), lambda x: _np_norm(x, (-1,)), [(3, 5)]),
    Case("embedding", lambda w: F.embedding(_IDS, w), lambda w: w[_IDS], [(6, 3)]),
    Case(
        "cross_entropy",
        lambda z: F.cross_entropy(z, _T5),
        lambda z: _np_ce(z, _T5),
        [(7, 5)],
        double=True,
    ),
    Case(
        "cross_entropy_weighted_smoothed",
        lambda z: F.cross_entropy(z, _T5, np.linspace(0.5, 2, 5), label_smoothing=0.2),
        lambda z: _np_ce(z, _T5, np.linspace(0.5, 2, 5), smoothing=0.2),
        [(7, 5)],
        double=True,
    ),
    Case(
        "cross_entropy_sum_none",
        lambda z: F.cross_entropy(z, _T5, reduction="none") * np.arange(7, dtype=np.float32),
        lambda z: _np_ce(z, _T5, reduction="none") * np.arange(7.0),
        [(7, 5)],
    ),
    Case(
        "cross_entropy_nd",
        lambda z: F.cross_entropy(z, np.array([[0, 2], [1, 1]]), reduction="sum"),
        lambda z: _np_ce(z.transpose(0, 2, 1).reshape(4, 3), np.array([0, 2, 1, 1]), reduction="sum"),
        [(2, 3, 2)],
    ),
    Case(
        "cross_entropy_probabilities",
        lambda z, p: F.cross_entropy(z, p.softmax(-1)),
        lambda z, p: -(_np_softmax(p, -1) * _np_log_softmax(z, -1)).sum(-1).mean(),
        [(4, 3), (4, 3)],
        double=True,
    ),
    Case(
        "nll_loss",
        lambda z: F.nll_loss(z, _T5, np.linspace(0.5, 2, 5)),
        lambda z: _np_nll(z, _T5, np.linspace(0.5, 2, 5)),
        [(7, 5)],
    ),
    Case("mse_loss", F.mse_loss, lambda a, b: ((a - b) ** 2).mean(), [(3, 4), (3, 4)], double=True),
    Case("l1_loss", lambda a, b: F.l1_loss(a, b, reduction="sum"), lambda a, b: np.abs(a - b).sum(), [(3, 4), (3, 4)]),
    Case(
        "smooth_l1_loss",
        lambda a: F.smooth_l1_loss(a, np.zeros((3, 4)), beta=0.5),
        lambda a: np.where(np.abs(a) < 0.5, a * a, np.abs(a) - 0.25).mean(),
        [(3, 4)],
        ["away"],
    ),
    Case(
        "huber_loss",
        lambda a: F.huber_loss(a, np.zeros((3, 4)), reduction="none", delta=0.5),
        lambda a: np.where(np.abs(a) < 0.5, 0.5 * a * a, 0.5 * (np.abs(a) - 0.25)),
        [(3, 4)],
        ["away"],
    ),
    Case(
        "binary_cross_entropy_with_logits",
        lambda z, y: F.binary_cross_entropy_with_logits(z * 8, y.sigmoid(), pos_weight=np.array([1.0, 2.0, 0.5])),
        lambda z, y: np.mean(
            -(
                np.array([1.0, 2.0, 0.5]) * _np_sigmoid(y) * np.log(_np_sigmoid(8 * z))
                + (1 - _np_sigmoid(y)) * np.log(1 - _np_sigmoid(8 * z))
            )
        ),
        [(4, 3), (4, 3)],
        double=True,
    ),
    Case(
        "binary_cross_entropy",
        lambda z, y: F.binary_cross_entropy(z.sigmoid(), y.sigmoid(), reduction="sum"),
        lambda z, y: np.sum(
            -(_np_sigmoid(y) * np.log(_np_sigmoid(z)) + (1 - _np_sigmoid(y)) * np.log(1 - _np_sigmoid(z)))
        ),
        [(4, 3), (4, 3)],
    ),
]
CASES += LAYER_CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_matches_numpy_reference(case: Case) -> None:
    arrays = _arrays(case)
    got = case.fn(*[minidl.tensor(a) for a in arrays])
    expected = np.asarray(case.ref(*arrays))
    assert got.shape == expected.shape
    assert got.dtype == np.float64
    np.testing.assert_allclose(got.data, expected, rtol=1e-7, atol=case.atol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_stays_float32(case: Case) -> None:
    arrays = _arrays(case)
    got = case.fn(*[minidl.tensor(a.astype(np.float32), requires_grad=True) for a in arrays])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.data, case.ref(*arrays), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backward_gradcheck(case: Case) -> None:
    inputs = [minidl.tensor(a, requires_grad=True) for a in _arrays(case)]
    out = case.fn(*inputs)
    if not out.requires_grad:
        pytest.skip("output does not depend on a differentiable input")
    assert gradcheck(case.fn, inputs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_production_engine_matches_the_reference_engine(case: Case) -> None:
    """run_backward (freeing, counting consumers, early leaf delivery) against backward_reference."""
    arrays = _arrays(case)
    weights = None
    grads = []
    for engine in ("reference", "production"):
        inputs = [minidl.tensor(a, requires_grad=True) for a in arrays]
        out = case.fn(*inputs)
        if not out.requires_grad:
            pytest.skip("output does not depend on a differentiable input")
        if weights is None:  # a random direction, so every output element's gradient path is exercised
            weights = np.random.default_rng(1).standard_normal(out.shape)
        if engine == "reference":
            minidl.autograd.backward_reference(out, minidl.tensor(weights))
        else:
            out.backward(minidl.tensor(weights))
        grads.append([None if t.grad is None else t.grad.data for t in inputs])
    for ref, got in zip(*grads):
        assert (ref is None) == (got is None)
        if ref is not None:
            assert got.dtype == ref.dtype
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c.double], ids=lambda c: c.id)
def test_double_backward_gradgradcheck(case: Case) -> None:
    inputs = [minidl.tensor(a, requires_grad=True) for a in _arrays(case)]
    assert gradgradcheck(case.fn, inputs)


def test_every_functional_export_is_covered_by_a_case() -> None:
    ids = " ".join(c.id for c in CASES)
    untested = [
        name
        for name in F.__all__
        if name not in ("dropout", "fold", "one_hot", "logsumexp", "tanh", "sigmoid", "relu") and name not in ids
    ]
    assert not untested, f"functional ops without a case in the op matrix: {untested}"


# ----------------------------------------------------------------------------- random shapes (hypothesis)
RANDOM_BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / (b.abs() + 0.5), lambda a, b: a / (np.abs(b) + 0.5)),
    "where": (lambda a, b: minidl.where(a.data > b.data, a, b), lambda a, b: np.where(a > b, a, b)),
}


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(sorted(RANDOM_BINARY)),
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=3),
    seed=st.integers(0, 2**16),
)
def test_random_broadcasting_shapes(op, shapes, seed):
    fn, ref = RANDOM_BINARY[op]
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes.input_shapes]
    inputs = [minidl.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.data, ref(*arrays), rtol=1e-12)
    assert gradcheck(fn, inputs)


@st.composite
def _shape_and_axes(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=4)))
    nd = len(shape)
    if nd == 0:
        return shape, None
    axes = draw(
        st.one_of(st.none(), st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd, unique_by=lambda a: a % nd))
    )
    if axes is not None and len(axes) == 1 and draw(st.booleans()):
        return shape, axes[0]  # a bare int
    return shape, None if axes is None else tuple(axes)


RANDOM_REDUCTIONS = {
    "sum": (lambda a, ax, k: a.sum(ax, k), lambda a, ax, k: a.sum(ax, keepdims=k)),
    "mean": (lambda a, ax, k: a.mean(ax, k), lambda a, ax, k: a.mean(ax, keepdims=k)),
    "max": (lambda a, ax, k: a.max(ax, k), lambda a, ax, k: a.max(ax, keepdims=k)),
    "var0": (lambda a, ax, k: a.var(ax, k, ddof=0), lambda a, ax, k: a.var(ax, keepdims=k)),
    "logsumexp": (
        lambda a, ax, k: a.logsumexp(ax, k),
        lambda a, ax, k: np.log(np.exp(a).sum(ax, keepdims=k)),
    ),
}


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(sorted(RANDOM_REDUCTIONS)),
    shape_axes=_shape_and_axes(),
    keep=st.booleans(),
    seed=st.integers(0, 99),
)
def test_random_reduction_shapes_and_axes(op, shape_axes, keep, seed):
    shape, axis = shape_axes
    fn, ref = RANDOM_REDUCTIONS[op]
    a = np.random.default_rng(seed).permutation(np.arange(float(np.prod(shape)))).reshape(shape) * 0.3
    x = minidl.tensor(a, requires_grad=True)
    out = fn(x, axis, keep)
    expected = ref(a, axis, keep)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda t: fn(t, axis, keep), [x])
