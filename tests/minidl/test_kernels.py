"""The numba kernels against their numpy references, the MINIDL_NUMBA switch, and compilation.

Every fused op is run twice on the same random inputs, with the kernels on and off (the numpy
reference), and its output and input gradients are compared, in float32 and float64, on odd
shapes, strides, padding, dilation, ceil mode, NaNs and non-contiguous inputs. A spy checks that
the "on" run really went through the kernel. Optimizers are compared over several steps.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import minidl
import minidl.functional as F
from minidl import kernels, optim
from minidl.tensor import Tensor

pytestmark = pytest.mark.skipif(not kernels._available, reason="numba is not installed")

ROOT = Path(__file__).resolve().parents[2]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 3e-5, "atol": 3e-6}, np.float64: {"rtol": 1e-11, "atol": 1e-12}}


@pytest.fixture
def spy(monkeypatch):
    """``spy(module, name)`` counts calls of a kernel entry point; returns the list of calls."""

    def install(module, name):
        calls = []
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
        return calls

    return install


def run(fn, arrays, on, seed=0):
    """Output and input gradients of ``sum(fn(*leaves) * R)`` with the kernels on or off."""
    with kernels.use_numba(on):
        leaves = [minidl.tensor(a, requires_grad=True) if a.dtype.kind == "f" else a for a in arrays]
        out = fn(*leaves)
        weights = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
        (out * weights).sum().backward()
        return [out.data] + [t.grad.data for t in leaves if isinstance(t, Tensor)]


def check(fn, arrays, dtype, calls=None):
    if calls is not None:
        calls.clear()
    got = run(fn, arrays, True)
    if calls is not None:
        assert calls, "the kernel path was not taken"
        calls.clear()
    want = run(fn, arrays, False)
    if calls is not None:
        assert not calls, "the kernel ran with the kernels switched off"
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **TOL[dtype])


def rand(shape, dtype, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------ activation
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (7,), (3, 5, 2)])
def test_relu(shape, dtype, spy):
    x = rand(shape, dtype)
    check(F.relu, [x], dtype, spy(kernels.activation, "relu"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_nan_zero_and_strided(dtype):
    x = np.array([[np.nan, -0.0, 0.0], [2.0, -3.0, np.inf], [-np.inf, 1e-30, -1e-30]], dtype)
    with kernels.use_numba(True):
        got = F.relu(minidl.tensor(x).T).data
    with kernels.use_numba(False):
        want = F.relu(minidl.tensor(x).T).data
    np.testing.assert_array_equal(got, want)
    check(lambda t: F.relu(t.transpose(0, 1)), [rand((5, 4), dtype)], dtype)  # non-contiguous input


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (1, 1)])
def test_softmax_last_axis(shape, dtype, spy):
    calls = spy(kernels.softmax, "softmax_backward")
    check(lambda x: F.softmax(x, dim=-1), [rand(shape, dtype) * 3], dtype, calls)
    calls.clear()
    check(lambda x: F.softmax(x, dim=0), [rand(shape, dtype)], dtype)  # other axes stay numpy
    assert not calls
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0], [np.nan, 0.0, 1.0]], dtype)
    with kernels.use_numba(True):
        got = F.softmax(minidl.tensor(x), dim=-1).data
    with kernels.use_numba(False), np.errstate(invalid="ignore"):
        want = F.softmax(minidl.tensor(x), dim=-1).data
    np.testing.assert_allclose(got, want, **TOL[dtype])  # masked entries, all-masked and inf/nan rows alike


# ------------------------------------------------------------------------ pooling
POOLS = [  # (N, C, H, W), kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 9, 7), 2, None, 0, 1, False),  # 2x2 windows all inside: the unrolled path
    ((2, 2, 5, 6), 2, 1, 0, 1, False),  # the unrolled path with overlapping windows
    ((2, 2, 8, 9), 3, 2, 1, 1, True),
    ((1, 3, 11, 10), (3, 2), (2, 1), (1, 0), (2, 1), False),
    ((3, 1, 5, 5), 5, 1, 2, 1, False),
    ((2, 2, 7, 7), 2, 3, 1, 1, True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k, s, p, d, ceil", POOLS)
def test_max_pool(shape, k, s, p, d, ceil, dtype, spy):
    calls = spy(kernels.pooling, "max_pool2d")
    check(lambda x: F.max_pool2d(x, k, s, p, d, ceil), [rand(shape, dtype)], dtype, calls)
    x = rand(shape, dtype, seed=3)
    x.reshape(-1)[::7] = np.nan  # numpy's argmax: the first NaN of a window wins
    x.reshape(-1)[1::5] = 2.5  # ties: the first maximum wins
    outs = []
    for on in (True, False):
        with kernels.use_numba(on):
            outs.append(F.max_pool2d(minidl.tensor(x), k, s, p, d, ceil, return_indices=True))
    np.testing.assert_array_equal(outs[0][0].data, outs[1][0].data)
    np.testing.assert_array_equal(outs[0][1].data, outs[1][1].data)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_strided_input_and_scatter_add(dtype, spy):
    calls = spy(kernels.pooling, "scatter_add")
    check(lambda x: F.max_pool2d(x.transpose(2, 3), 2), [rand((2, 3, 6, 8), dtype)], dtype, calls)
    index = np.random.default_rng(0).integers(0, 10, 23)
    grad = rand(23, dtype)
    want = np.bincount(index, weights=grad, minlength=10).astype(dtype)
    np.testing.assert_allclose(kernels.pooling.scatter_add(grad, index, (2, 5)).reshape(-1), want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_scatters_rows(dtype, spy):
    calls = spy(kernels.pooling, "scatter_add_rows")
    ids = np.random.default_rng(0).integers(0, 5, (4, 7))  # repeated ids accumulate
    check(lambda w: F.embedding(ids, w), [rand((5, 3), dtype)], dtype, calls)
    check(lambda w: w[ids - 5], [rand((5, 2, 3), dtype)], dtype, calls)  # negative ids, wider rows
    grad = rand((6, 3), dtype)
    index = np.array([2, 0, 2, 2, 3, 0])
    want = np.zeros((4, 3), dtype)
    for k, row in enumerate(index):  # the oracle: one row at a time
        want[row] += grad[k]
    np.testing.assert_allclose(kernels.pooling.scatter_add_rows(grad, index, 4), want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "xs, ws, kw, entry",
    [
        # LeNet-5's second conv: more output than input channels, stride 1: the row layout's col2im
        ((3, 6, 14, 14), (16, 6, 5, 5), {}, "row_col2im_into"),
        ((2, 4, 9, 16), (6, 4, 3, 3), dict(padding=(2, 1), dilation=(1, 2)), "row_col2im_into"),
        ((2, 4, 9, 8), (6, 2, 3, 2), dict(stride=2, padding=(2, 1), dilation=(1, 2), groups=2), "col2im_into"),
        ((2, 3, 7, 7), (2, 3, 3, 3), dict(stride=(3, 2), padding=1), "col2im_into"),
    ],
)
def test_conv_input_gradient_col2im(xs, ws, kw, entry, dtype, spy, monkeypatch):
    from minidl.ops import conv

    monkeypatch.setattr(conv, "COLUMN_BUDGET", 1)  # one image per chunk: every chunk's slice of gx written
    monkeypatch.setattr(conv, "ROW_BUDGET", 1)
    calls = spy(kernels.conv, entry)
    check(lambda x, w: F.conv2d(x, w, None, **kw), [rand(xs, dtype), rand(ws, dtype, seed=2)], dtype, calls)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_on_a_column_major_linear_output(dtype, spy):
    calls = spy(kernels.activation, "relu")
    check(lambda x, w: F.relu(F.linear(x, w)), [rand((5, 3), dtype), rand((4, 3), dtype, seed=2)], dtype, calls)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, k, s, p, ceil, include_pad, divisor",
    [
        ((2, 3, 9, 7), 2, None, 0, False, True, None),
        ((2, 2, 8, 9), 3, 2, 1, True, False, None),
        ((1, 3, 10, 11), (3, 2), (2, 1), (1, 1), False, True, 5),
        ((2, 1, 7, 7), 3, 3, 1, True, True, None),
    ],
)
def test_avg_pool(shape, k, s, p, ceil, include_pad, divisor, dtype, spy):
    adjoint = spy(kernels.pooling, "avg_pool2d_adjoint")  # the backward
    calls = spy(kernels.pooling, "avg_pool2d")
    check(lambda x: F.avg_pool2d(x, k, s, p, ceil, include_pad, divisor), [rand(shape, dtype)], dtype, calls)
    assert adjoint


# ------------------------------------------------------------------------ loss
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, weighted, ignore, smoothing, reduction",
    [
        ((13, 7), False, -100, 0.0, "mean"),
        ((13, 7), True, 3, 0.1, "sum"),
        ((5, 4, 3), True, -100, 0.25, "none"),
        ((1, 1), False, -100, 0.0, "mean"),
        ((6, 5), True, 2, 0.0, "mean"),
    ],
)
def test_cross_entropy(shape, weighted, ignore, smoothing, reduction, dtype, spy):
    rng = np.random.default_rng(2)
    target = rng.integers(0, shape[1], (shape[0], *shape[2:]))
    if ignore >= 0:
        target.reshape(-1)[::3] = ignore
    weight = rng.uniform(0.5, 2.0, shape[1]).astype(dtype) if weighted else None
    logits = rand(shape, dtype) * 4
    calls = spy(kernels.loss, "cross_entropy_backward")

    def loss(z):
        return F.cross_entropy(z, target, weight, ignore_index=ignore, reduction=reduction, label_smoothing=smoothing)

    check(loss, [logits], dtype, calls)


# ------------------------------------------------------------------------ normalization
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 7), (3, 2, 5, 6)])
@pytest.mark.parametrize("training, affine", [(True, True), (True, False), (False, True)])
def test_batch_norm(shape, training, affine, dtype, spy):
    c = shape[1]
    rng = np.random.default_rng(4)
    stats = (rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype))
    running = {True: [s.copy() for s in stats], False: [s.copy() for s in stats]}
    arrays = [rand(shape, dtype) * 3 + 1] + ([rand(c, dtype, 5), rand(c, dtype, 6)] if affine else [])

    def bn(x, *wb):
        on = kernels.enabled()
        w, b = wb if wb else (None, None)
        return F.batch_norm(x, running[on][0], running[on][1], w, b, training=training, momentum=0.3, eps=1e-3)

    check(bn, arrays, dtype, spy(kernels.normalization, "batch_norm_backward"))
    for on_stat, off_stat in zip(running[True], running[False]):
        np.testing.assert_allclose(on_stat, off_stat, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, normalized, affine", [((6, 5), 5, "both"), ((2, 3, 4), (3, 4), "weight"), ((3, 7), 7, None)]
)
def test_layer_norm(shape, normalized, affine, dtype, spy):
    tail = normalized if isinstance(normalized, tuple) else (normalized,)
    arrays = [rand(shape, dtype) * 2 - 1]
    if affine:
        arrays.append(rand(tail, dtype, 7))
    if affine == "both":
        arrays.append(rand(tail, dtype, 8))

    def ln(x, w=None, b=None):
        return F.layer_norm(x, normalized, w, b, eps=1e-4)

    check(ln, arrays, dtype, spy(kernels.normalization, "layer_norm_backward"))


def test_empty_batches_take_the_kernel_path_safely():
    empty = np.zeros((0, 3, 4, 4), np.float32)
    check(lambda x: F.max_pool2d(x, 2), [empty], np.float32)
    check(lambda x: F.avg_pool2d(x, 2), [empty], np.float32)
    check(F.relu, [empty], np.float32)
    check(lambda x: F.softmax(x, dim=-1), [empty], np.float32)
    check(lambda x: F.layer_norm(x, (4,)), [empty], np.float32)
    stats = (np.zeros(3, np.float32), np.ones(3, np.float32))
    check(lambda x: F.batch_norm(x, *stats, training=False), [empty], np.float32)
    check(lambda x, w: F.conv2d(x, w), [empty, np.ones((2, 3, 3, 3), np.float32)], np.float32)


# ------------------------------------------------------------------------ optimizers
OPTIMIZERS = [
    ("sgd", lambda ps: optim.SGD(ps, lr=0.1)),
    ("sgd-momentum-wd", lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd-nesterov-max", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True, maximize=True)),
    ("adam", lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.01)),
    ("adam-amsgrad-max", lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True, maximize=True)),
    ("adamw", lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1)),
    ("lars", lambda ps: optim.LARS(ps, lr=0.5, momentum=0.9, weight_decay=0.001, eta=0.01)),
    ("lamb", lambda ps: optim.LAMB(ps, lr=0.01, weight_decay=0.01)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, make", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_optimizers(name, make, dtype, spy):
    entry = {"sgd": "sgd", "ada": "adam", "lar": "lars", "lam": "lamb"}[name[:3]]
    calls = spy(kernels.optim, entry)
    shapes = [(7, 5), (3,), (1,), (2, 3, 2)]
    rng = np.random.default_rng(5)
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]
    finals = []
    for on in (True, False):
        params = [minidl.nn.Parameter(p.copy()) for p in start]
        opt = make(params)
        with kernels.use_numba(on):
            for step in grads:
                for p, g in zip(params, step):
                    p.grad = minidl.tensor(g)
                opt.step()
        assert bool(calls) == on
        calls.clear()
        finals.append(([p.data for p in params], opt.state_dict()))
    tol = TOL[dtype] if name[:3] not in ("lar", "lam") else {"rtol": 1e-5 if dtype == np.float32 else 1e-12}
    for a, b in zip(finals[0][0], finals[1][0]):
        np.testing.assert_allclose(a, b, **tol)
    for i, state in finals[1][1]["state"].items():  # same state (buffers, step counts) in the same places
        for key, value in state.items():
            np.testing.assert_allclose(finals[0][1]["state"][i][key], value, **tol)


def test_optimizer_kernels_refuse_unfusable_arrays():
    p = np.zeros((4, 6), np.float32)[:, ::2]  # not contiguous: updating a flat copy would lose the step
    g = np.ones((4, 3), np.float32)
    assert not kernels.optim.sgd(p, g, {}, 0.1, 0.0, 0.0, 0.0, False, False)
    assert not kernels.optim.sgd(np.zeros(3, np.float32), np.zeros(3), {}, 0.1, 0.0, 0.0, 0.0, False, False)
    assert kernels.optim.norms(p, g) is None
    param = minidl.nn.Parameter(np.zeros((4, 6), np.float32))
    param.data = param.data[:, ::2]
    param.grad = minidl.tensor(g)
    optim.SGD([param], lr=0.5, momentum=0.9).step()  # falls back to the numpy reference
    np.testing.assert_allclose(param.data, -0.5)


# ------------------------------------------------------------------------ the switch and compilation
def test_use_numba_restores_and_set_enabled():
    before = kernels.enabled()
    with kernels.use_numba(False):
        assert not kernels.enabled() and not kernels.wanted(np.zeros(2, np.float32))
        with kernels.use_numba(True):
            assert kernels.wanted(np.zeros(2, np.float64))
            assert not kernels.wanted(np.zeros(2, np.float16)) and not kernels.wanted(np.zeros(2, np.int64))
        assert not kernels.enabled()
    assert kernels.enabled() == before


def _python(code, **env):
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=240)


def test_environment_switch_and_lazy_numba():
    code = (
        "import sys, numpy as np, minidl, minidl.functional as F\n"
        "from minidl import kernels, models\n"
        "assert 'numba' not in sys.modules, 'import minidl imported numba'\n"
        "m = models.LeNet5(10, 1, 8)\n"
        "F.cross_entropy(m(minidl.randn(4, 1, 8, 8)), np.arange(4)).backward()\n"
        "print(kernels.enabled(), sorted(k for k in sys.modules if k.startswith('minidl.kernels.')))\n"
    )
    off = _python(code, MINIDL_NUMBA="0")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split()[0] == "False" and "minidl.kernels.pooling" not in off.stdout
    on = _python(code, MINIDL_NUMBA="1")
    assert on.returncode == 0, on.stderr
    assert on.stdout.startswith("True") and "minidl.kernels.pooling" in on.stdout
    bad = _python("import minidl", MINIDL_NUMBA="maybe")
    assert bad.returncode != 0 and "MINIDL_NUMBA must be 1" in bad.stderr


def test_one_specialisation_per_dtype_and_no_silent_compiles():
    kernels.warm_up(("float32", "float64"))
    from minidl.kernels.jit import REGISTRY

    for k in REGISTRY:
        assert k.specialisations() <= 2, f"{k.name} has {k.specialisations()} specialisations"
    with pytest.raises(TypeError, match="No matching definition"):  # float32 output for float64 input
        kernels.activation._relu(np.zeros(3), np.zeros(3, np.float32), np.zeros(3, bool))
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.activation._relu.prepare(np.float16)


def test_compile_lock_waits_for_the_holder_and_times_out(tmp_path, monkeypatch):
    from minidl.kernels.jit import LOCK_NAME, _NoLock, compile_lock

    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another "process" (another open file) holds the lock
    monkeypatch.setenv("MINIDL_COMPILE_LOCK_TIMEOUT", "0.2")
    with pytest.warns(RuntimeWarning, match="held the compile lock"), pytest.raises(_NoLock):
        with compile_lock(str(tmp_path)):
            pass
    monkeypatch.setenv("MINIDL_COMPILE_LOCK_TIMEOUT", "30")
    release = threading.Timer(0.3, lambda: fcntl.flock(fd, fcntl.LOCK_UN))
    release.start()
    start = time.monotonic()
    with compile_lock(str(tmp_path)):
        with compile_lock(str(tmp_path)):  # re-entrant within a process
            waited = time.monotonic() - start
    os.close(fd)
    assert 0.2 < waited < 20


def test_ranks_starting_together_compile_once(tmp_path):
    """Three processes want the same kernel at the same moment: one compiles, two wait and load."""
    start_at = time.time() + 4.0
    code = (
        "import json, time\n"
        "from minidl.kernels import activation\n"
        f"time.sleep(max(0.0, {start_at} - time.time()))\n"
        "activation._relu.prepare('float32')\n"
        "hits, misses = activation._relu.cache_counts()\n"
        "print(json.dumps({'loaded': hits, 'compiled': misses, 'dir': activation._relu.dispatcher.stats.cache_path}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["compiled"] for r in results) == 1, results
    assert sum(r["loaded"] for r in results) == 2, results
    # once the cache is complete, loading takes no lock: a process holding it does not delay a new rank
    fd = os.open(os.path.join(results[0]["dir"], "minidl-kernels.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        again = _python(
            code.replace(f"{start_at}", "0"), NUMBA_CACHE_DIR=str(tmp_path), MINIDL_COMPILE_LOCK_TIMEOUT="100"
        )
    finally:
        os.close(fd)
    last = json.loads(again.stdout.strip().splitlines()[-1])
    assert (last["loaded"], last["compiled"]) == (1, 0), again.stderr
    assert "compile lock" not in again.stderr


def test_allocator_setting_and_opt_out():
    from minidl.kernels.allocator import keep_freed_memory

    if sys.platform.startswith("linux"):
        assert keep_freed_memory()
    out = _python(
        "from minidl.kernels.allocator import keep_freed_memory; print(keep_freed_memory())",
        MINIDL_KEEP_FREED_MEMORY="0",
    )
    assert out.stdout.strip() == "False", out.stderr
