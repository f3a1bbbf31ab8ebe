"""Training-step time and memory of minidl against PyTorch CPU and a hand-written numpy floor.

    python -m minidl.bench                                  # all models, 1 and 2 threads
    python -m minidl.bench --models mlp,lenet --threads 1 --rounds 11 --json runs/bench.json
    python -m minidl.bench --numpy-reference                # also time minidl with MINIDL_NUMBA=0
    python -m minidl.bench --profile lenet                  # where the time goes, per op, numba vs numpy
    python -m minidl.bench --threading-trap                 # numba's threading layers vs OpenBLAS threads

Each model (an MLP 784-512-512-10 at batch 128, LeNet-5 on 28x28 at batch 64, a ResNet basic
block on 32x32x3 at batch 32, the tiny transformer classifier on 64 sequences of 16 tokens) is
built once in minidl; the PyTorch twin gets the same architecture and a copy of the same
weights, and the two must give the same loss before anything is timed. A step is forward,
cross-entropy, backward and an SGD-momentum update on one fixed batch.

Timing: after warm-up, the engines run in rounds; in each round every engine runs ``--steps``
steps (the order rotates between rounds) and its median step time is recorded, so a burst of
load on a shared machine hits all engines of a round alike. Reported: the median over rounds of
each engine's step time, and for each pair the median (min-max) over rounds of the per-round
ratio. The numpy floor is an MLP written by hand in numpy with no autograd at all: the time an
engine with zero overhead would take with the same GEMMs.

Peak memory of a step is measured in fresh processes per engine (median of ``--memory-repeats``):
after warm-up, freed memory is
returned to the OS (``malloc_trim``), the resident-set high-water mark is reset
(``/proc/self/clear_refs``), one step runs, and the peak is read from ``/proc/self/status``:
the extra resident memory the step needed above the model, optimizer state and data (Linux).

PyTorch is optional (install it in a separate environment; the project never depends on it);
without it the torch columns are omitted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

MODELS = ("mlp", "lenet", "resnet-block", "transformer")
BATCH = {"mlp": 128, "lenet": 64, "resnet-block": 32, "transformer": 64}
SEQ_LEN, VOCAB, SEQ_CLASSES = 16, 16, 4
LR, MOMENTUM = 0.01, 0.9


# ----------------------------------------------------------------------------- workloads
def make_batch(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random batch (inputs, integer targets) for a model."""
    rng = np.random.default_rng(seed)
    n = BATCH[name]
    if name == "transformer":
        return rng.integers(0, VOCAB, (n, SEQ_LEN)), rng.integers(0, SEQ_CLASSES, n)
    shape = {"mlp": (n, 784), "lenet": (n, 1, 28, 28), "resnet-block": (n, 3, 32, 32)}[name]
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, n)


def make_minidl_model(name: str) -> Any:
    import minidl
    from minidl import models, nn
    from minidl.nn.residual import BasicBlock

    minidl.manual_seed(0)
    if name == "mlp":
        return models.MLP(784, (512, 512), 10)
    if name == "lenet":
        return models.LeNet5(10, in_channels=1, input_size=28)
    if name == "resnet-block":
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            BasicBlock(16, 16),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
    if name == "transformer":
        return models.TransformerClassifier(VOCAB, SEQ_CLASSES, max_len=SEQ_LEN)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def make_torch_model(name: str, source: Any) -> Any:
    """The PyTorch twin of a minidl model, with a copy of its weights (parameters in the same order)."""
    import torch
    from torch import nn

    class Block(nn.Module):  # minidl.nn.residual.BasicBlock without downsampling
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + x)

    class Transformer(nn.Module):  # minidl.models.TransformerClassifier, pre-norm, mean pooling
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 32)
            self.pos_embed = nn.Parameter(torch.zeros(1, SEQ_LEN, 32))
            layer = nn.TransformerEncoderLayer(32, 4, 64, 0.0, activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(32)
            self.head = nn.Linear(32, SEQ_CLASSES)

        def forward(self, ids: Any) -> Any:
            x = self.embed(ids) + self.pos_embed[:, : ids.shape[1]]
            return self.head(self.norm(self.encoder(x)).mean(dim=1))

    if name == "mlp":
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    elif name == "lenet":
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )
    elif name == "resnet-block":
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            Block(16),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
    else:
        model = Transformer()
    mine = list(source.parameters())
    theirs = list(model.parameters())
    if len(mine) != len(theirs):
        raise RuntimeError(f"bench: {name} has {len(mine)} parameters in minidl but {len(theirs)} in PyTorch")
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(mine, theirs)):
            if tuple(a.shape) != tuple(b.shape):
                raise RuntimeError(f"bench: {name} parameter {i}: minidl {a.shape} vs PyTorch {tuple(b.shape)}")
            b.copy_(torch.from_numpy(np.array(a.data)))
    return model


def minidl_step(name: str) -> tuple[Callable[[], float], Any]:
    """A closure running one minidl training step (returns the loss), and the model."""
    import minidl
    import minidl.functional as F
    from minidl import optim

    model = make_minidl_model(name)
    x, y = make_batch(name)
    inputs = x if name == "transformer" else minidl.tensor(x)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step() -> float:
        loss = F.cross_entropy(model(inputs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step, model


def torch_step(name: str, source: Any) -> Callable[[], float]:
    import torch
    import torch.nn.functional as TF

    model = make_torch_model(name, source)
    x, y = make_batch(name)
    inputs, target = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step() -> float:
        loss = TF.cross_entropy(model(inputs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def numpy_floor_step(source: Any) -> Callable[[], float]:
    """The MLP 784-512-512-10 step written by hand in numpy: no graph, no Tensor, no dispatch.

    Same weights as ``source`` (a minidl MLP), same arithmetic: ReLU layers, mean softmax
    cross-entropy, SGD with momentum (PyTorch's rule: the first step sets the buffer to the gradient).
    """
    params = [np.array(p.data) for p in source.parameters()]  # W1, b1, W2, b2, W3, b3; W is (out, in)
    bufs: list[np.ndarray | None] = [None] * len(params)
    x, y = make_batch("mlp")
    n = x.shape[0]
    rows = np.arange(n)

    def step() -> float:
        w1, b1, w2, b2, w3, b3 = params
        h1 = x @ w1.T
        h1 += b1
        a1 = np.maximum(h1, 0)
        h2 = a1 @ w2.T
        h2 += b2
        a2 = np.maximum(h2, 0)
        z = a2 @ w3.T
        z += b3
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - z[rows, y]))
        dz = e / s
        dz[rows, y] -= 1
        dz *= 1.0 / n
        grads = [None, None, None, None, dz.T @ a2, dz.sum(axis=0)]
        da2 = dz @ w3
        da2 *= h2 > 0
        grads[2], grads[3] = da2.T @ a1, da2.sum(axis=0)
        da1 = da2 @ w2
        da1 *= h1 > 0
        grads[0], grads[1] = da1.T @ x, da1.sum(axis=0)
        for i, (p, g) in enumerate(zip(params, grads)):
            if bufs[i] is None:
                bufs[i] = g.copy()
            else:
                bufs[i] *= MOMENTUM
                bufs[i] += g
            p -= LR * bufs[i]
        return loss

    step.params = params  # type: ignore[attr-defined]  (for the test that it computes what minidl does)
    return step


# ----------------------------------------------------------------------------- threads
def set_threads(n: int) -> None:
    """Limit BLAS, numba and (if loaded) PyTorch to ``n`` threads each."""
    from minidl.threads import configure_threads

    configure_threads(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- timing
def time_steps(step: Callable[[], float], steps: int) -> float:
    """Median seconds per step over ``steps`` consecutive steps."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def engines_for(name: str, use_torch: bool, numpy_reference: bool) -> tuple[dict[str, Callable[[], float]], Any]:
    from minidl import kernels

    step, model = minidl_step(name)
    engines: dict[str, Callable[[], float]] = {"minidl": step}
    if numpy_reference:
        ref_step, _ = minidl_step(name)

        def reference() -> float:
            with kernels.use_numba(False):
                return ref_step()

        engines["minidl-numpy"] = reference
    if use_torch:
        engines["torch"] = torch_step(name, model)
    if name == "mlp":
        engines["numpy-floor"] = numpy_floor_step(model)
    return engines, model


def check_same_loss(name: str, engines: dict[str, Callable[[], float]]) -> dict[str, float]:
    """First-step losses of all engines (same weights, same batch): they must agree."""
    losses = {k: fn() for k, fn in engines.items()}
    ref = losses["minidl"]
    for k, v in losses.items():
        if not abs(v - ref) <= 1e-4 * max(1.0, abs(ref)):
            raise RuntimeError(f"bench: {name}: first-step loss {v:.6f} from {k} differs from minidl's {ref:.6f}")
    return losses


def run_model(name: str, threads: int, args: argparse.Namespace, use_torch: bool) -> dict[str, Any]:
    engines, _ = engines_for(name, use_torch, args.numpy_reference)
    losses = check_same_loss(name, engines)
    for fn in engines.values():
        for _ in range(args.warmup):
            fn()
    names = list(engines)
    per_round: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            per_round[k].append(time_steps(engines[k], args.steps))
    result: dict[str, Any] = {
        "model": name,
        "batch": BATCH[name],
        "threads": threads,
        "first_step_loss": losses,
        "median_step_ms": {k: 1e3 * statistics.median(v) for k, v in per_round.items()},
        "round_step_ms": {k: [1e3 * t for t in v] for k, v in per_round.items()},
        "ratios": {},
    }
    for base in ("torch", "numpy-floor", "minidl-numpy"):
        if base in per_round:
            ratios = [a / b for a, b in zip(per_round["minidl"], per_round[base])]
            result["ratios"][f"minidl/{base}"] = {
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
            }
    if "torch" in per_round and "numpy-floor" in per_round:
        ratios = [a / b for a, b in zip(per_round["numpy-floor"], per_round["torch"])]
        result["ratios"]["numpy-floor/torch"] = {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        }
    return result


# ----------------------------------------------------------------------------- memory
def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def probe_memory(name: str, engine: str, threads: int) -> int:
    """Extra resident bytes one step of ``engine`` needs (run in a fresh process; Linux only)."""
    import ctypes

    from minidl import kernels

    if engine == "torch":
        import torch  # noqa: F401  (imported first, so set_threads limits it too)
    set_threads(threads)
    if engine == "minidl-numpy":
        kernels.set_enabled(False)
    step, model = minidl_step(name)
    if engine == "torch":
        step = torch_step(name, model)
    elif engine == "numpy-floor":
        step = numpy_floor_step(model)
    for _ in range(3):
        step()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _proc_status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current resident set
    step()
    return 1024 * (_proc_status_kib("VmHWM") - before)


def measure_memory(name: str, engines: list[str], threads: int, repeats: int) -> dict[str, Any]:
    """Median (and all values) over ``repeats`` fresh processes per engine, run in interleaved order."""
    values: dict[str, list[int]] = {e: [] for e in engines}
    for _ in range(repeats):
        for engine in engines:
            cmd = [sys.executable, "-m", "minidl.bench", "--_memory-probe", name, engine, "--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            try:
                values[engine].append(int(proc.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                print(f"bench: memory probe of {engine} on {name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return {
        "median": {e: (int(statistics.median(v)) if v else None) for e, v in values.items()},
        "all": values,
    }


# ----------------------------------------------------------------------------- threading trap
TRAP_CONFIGS = {  # name: (environment, BLAS threads, numba kernel parallel?)
    "omp (numba default)": ({}, 2, True),
    "omp, GOMP_SPINCOUNT=0": ({"GOMP_SPINCOUNT": "0"}, 2, True),
    "workqueue": ({"NUMBA_THREADING_LAYER": "workqueue"}, 2, True),
    "omp, BLAS 1 thread": ({}, 1, True),
    "serial kernel (minidl)": ({}, 2, False),
    "serial kernel, BLAS 1 thread": ({}, 1, False),
}


def trap_child(parallel: bool, blas: int, rounds: int) -> dict[str, float]:
    """im2col (a numba kernel) then a GEMM (OpenBLAS), as a conv forward does, 2 threads; median ms."""
    import numba
    from threadpoolctl import threadpool_limits

    threadpool_limits(blas, user_api="blas")
    if parallel:
        numba.set_num_threads(2)
    prange = numba.prange

    def im2col_rows(x, cols, k, pad):  # pragma: no cover (compiled)
        n, c, h, w = x.shape
        for r in prange(c * k * k):
            ci, i, j = r // (k * k), (r // k) % k, r % k
            for b in range(n):
                for y in range(h):
                    yy = y + i - pad
                    for xo in range(w):
                        xx = xo + j - pad
                        inside = 0 <= yy < h and 0 <= xx < w
                        cols[r, (b * h + y) * w + xo] = x[b, ci, yy, xx] if inside else 0

    kern = numba.njit(nogil=True, parallel=parallel)(im2col_rows)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 144)).astype(np.float32)
    cols = np.empty((144, 32 * 32 * 32), np.float32)
    parts = {"im2col": lambda: kern(x, cols, 3, 1), "gemm": lambda: w @ cols}
    parts["im2col+gemm"] = lambda: (kern(x, cols, 3, 1), w @ cols)
    times: dict[str, list[float]] = {k: [] for k in parts}
    for fn in parts.values():
        fn()
    for _ in range(rounds):
        for k, fn in parts.items():
            times[k].append(time_steps(fn, 15))
    out = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    out["layer"] = numba.threading_layer() if parallel else "none"  # type: ignore[assignment]
    return out


def threading_trap(rounds: int) -> list[dict[str, Any]]:
    """The conv-forward trap (numba OpenMP workers vs OpenBLAS workers), each configuration in its own
    process (a threading layer is chosen once per process), configurations interleaved over rounds."""
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in TRAP_CONFIGS}
    for _ in range(rounds):
        for name, (env, blas, parallel) in TRAP_CONFIGS.items():
            cmd = [sys.executable, "-m", "minidl.bench", "--_trap-child", str(int(parallel)), str(blas)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
            try:
                rows[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                last = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
                print(f"bench: threading-trap child {name!r} failed: {last[0]}", file=sys.stderr)
    print(f"conv forward = numba im2col + OpenBLAS GEMM, 32x16x32x32 input, 3x3: median ms over {rounds} rounds")
    print(f"  {'configuration':<26} {'layer':>9} {'im2col':>8} {'gemm':>8} {'both':>8} {'both/(sum of parts)':>20}")
    summary = []
    for name, runs in rows.items():
        if not runs:
            continue
        med = {k: statistics.median(r[k] for r in runs) for k in ("im2col", "gemm", "im2col+gemm")}
        ratio = med["im2col+gemm"] / (med["im2col"] + med["gemm"])
        print(
            f"  {name:<26} {runs[0]['layer']:>9} {med['im2col']:8.2f} {med['gemm']:8.2f} {med['im2col+gemm']:8.2f} "
            f"{ratio:20.2f}"
        )
        summary.append({"configuration": name, "layer": runs[0]["layer"], **med, "slowdown": ratio})
    return summary


# ----------------------------------------------------------------------------- report
def machine_info() -> dict[str, Any]:
    import numba
    import numpy

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    return info


def _ratio(r: dict[str, float] | None) -> str:
    return "-" if r is None else f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"


def _mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    head = (
        f"{'model':<13} {'thr':>3} {'minidl ms':>9} {'torch ms':>8} {'floor ms':>8} "
        f"{'minidl/torch':>20} {'minidl/floor':>20} {'minidl/numpy-ref':>20}  peak MiB minidl/torch"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        ms = r["median_step_ms"]
        mem = r.get("peak_step_bytes", {})
        mem_s = f"{_mib(mem.get('minidl'))}/{_mib(mem.get('torch'))}"
        if mem.get("minidl") and mem.get("torch"):
            mem_s += f" = {mem['minidl'] / mem['torch']:.2f}x"
        print(
            f"{r['model']:<13} {r['threads']:>3} {ms['minidl']:>9.2f} "
            f"{ms.get('torch', float('nan')):>8.2f} {ms.get('numpy-floor', float('nan')):>8.2f} "
            f"{_ratio(r['ratios'].get('minidl/torch')):>20} {_ratio(r['ratios'].get('minidl/numpy-floor')):>20} "
            f"{_ratio(r['ratios'].get('minidl/minidl-numpy')):>20}  {mem_s}"
        )


def profile_model(name: str, threads: int, rounds: int, steps: int, top: int) -> dict[str, Any]:
    """Where minidl's step time goes, per op (forward and backward separately) and optimizer step,
    with the numba kernels on and off in alternating rounds of one process."""
    from minidl import kernels
    from minidl.autograd import Function
    from minidl.optim.optimizer import Optimizer

    set_threads(threads)
    mode = ["numba"]
    totals: dict[str, dict[str, float]] = {"numba": {}, "numpy": {}}

    def timed(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                table = totals[mode[0]]
                table[key] = table.get(key, 0.0) + time.perf_counter() - start

        return wrapper

    def subclasses(cls: type) -> list[type]:
        return [c for s in cls.__subclasses__() for c in (s, *subclasses(s))]

    patched: list[tuple[Any, str, Any]] = []
    for cls in set(subclasses(Function)):
        for attr in ("forward", "backward"):
            if attr in cls.__dict__:
                patched.append((cls, attr, cls.__dict__[attr]))
                setattr(cls, attr, staticmethod(timed(f"{cls.__name__}.{attr}", cls.__dict__[attr].__func__)))
    patched.append((Optimizer, "step", Optimizer.__dict__["step"]))
    Optimizer.step = timed("optimizer.step", Optimizer.step)  # type: ignore[method-assign]
    try:
        step, _ = minidl_step(name)
        step_times: dict[str, list[float]] = {"numba": [], "numpy": []}
        for on in (True, False, True, False):
            with kernels.use_numba(on):
                step()
        for table in totals.values():
            table.clear()
        for r in range(rounds):
            for m in ("numba", "numpy") if r % 2 == 0 else ("numpy", "numba"):
                mode[0] = m
                with kernels.use_numba(m == "numba"):
                    for _ in range(steps):
                        start = time.perf_counter()
                        step()
                        step_times[m].append(time.perf_counter() - start)
    finally:
        for cls, attr, original in patched:
            setattr(cls, attr, original)
    n = rounds * steps
    med = {m: 1e3 * statistics.median(v) for m, v in step_times.items()}
    print(
        f"minidl {name}, {threads} thread(s), {n} steps each: median step {med['numba']:.2f} ms "
        f"with the numba kernels, {med['numpy']:.2f} ms with the numpy references"
    )
    print("ms per step (a backward's time includes the ops it calls):")
    print(f"  {'op':<28} {'numba':>8} {'numpy':>8} {'ratio':>6}")
    keys = sorted(set(totals["numba"]) | set(totals["numpy"]), key=lambda k: -totals["numpy"].get(k, 0.0))
    for k in keys[:top]:
        a, b = (1e3 * totals[m].get(k, 0.0) / n for m in ("numba", "numpy"))
        print(f"  {k:<28} {a:8.3f} {b:8.3f} {a / b if b else float('nan'):6.2f}")
    return {
        "model": name,
        "threads": threads,
        "median_step_ms": med,
        "op_ms_per_step": {m: {k: 1e3 * v / n for k, v in t.items()} for m, t in totals.items()},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m minidl.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--threads", default="1,2", help="thread counts to run, comma-separated (default: 1,2)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per model (default: 7)")
    p.add_argument("--steps", type=int, default=10, help="steps per engine per round (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per engine first (default: 3)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    p.add_argument("--numpy-reference", action="store_true", help="also time minidl with its numpy references")
    p.add_argument(
        "--memory-repeats",
        type=int,
        default=3,
        help="fresh processes per engine for the peak-memory probe, median reported; 0 skips it (default: 3)",
    )
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--profile", metavar="MODEL", help="time minidl's ops for MODEL, numba kernels on vs off, and exit")
    p.add_argument("--top", type=int, default=20, help="rows of --profile output (default: 20)")
    p.add_argument(
        "--threading-trap",
        action="store_true",
        help="measure numba's threading layers against OpenBLAS's threads (im2col + GEMM, 2 threads) and exit",
    )
    p.add_argument("--_memory-probe", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    p.add_argument("--_trap-child", nargs=2, type=int, metavar=("PARALLEL", "BLAS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models + ([args.profile] if args.profile else []):
        if m not in MODELS:
            p.error(f"unknown model {m!r}; expected one of {', '.join(MODELS)}")
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if min(args.threads) < 1 or args.rounds < 1 or args.steps < 1 or args.warmup < 0 or args.memory_repeats < 0:
        p.error("--threads, --rounds and --steps must be at least 1, --warmup and --memory-repeats at least 0")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args._memory_probe:
        print(probe_memory(*args._memory_probe, args.threads[0]))
        return []
    if args._trap_child:
        print(json.dumps(trap_child(bool(args._trap_child[0]), args._trap_child[1], args.rounds)))
        return []
    if args.threading_trap:
        summary = threading_trap(args.rounds)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine_info(), "threading_trap": summary}, f, indent=1)
        return []
    if args.profile:
        prof = profile_model(args.profile, args.threads[0], args.rounds, args.steps, args.top)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(prof, f, indent=1)
        return []
    use_torch = not args.no_torch and torch_available()
    if not use_torch and not args.no_torch:
        print("bench: PyTorch is not importable here; timing minidl and the numpy floor only", file=sys.stderr)
    from minidl import kernels

    if kernels.enabled():
        kernels.warm_up(("float32",))  # compile or load every kernel before any clock starts
    info = machine_info()
    print(
        f"minidl.bench: {info['cpu']}, {info['cores']} cores, load average {info['load_average']}; "
        f"numpy {info['numpy']}, numba {info['numba']}"
        + (f", torch {info['torch']}" if use_torch else "")
        + f"; numba kernels {'on' if kernels.enabled() else 'off (MINIDL_NUMBA=0)'}"
    )
    results = []
    for threads in args.threads:
        set_threads(threads)
        for name in args.models:
            r = run_model(name, threads, args, use_torch)
            if args.memory_repeats and sys.platform.startswith("linux"):
                engines = ["minidl"] + (["torch"] if use_torch else []) + (["numpy-floor"] if name == "mlp" else [])
                memory = measure_memory(name, engines, threads, args.memory_repeats)
                r["peak_step_bytes"], r["peak_step_bytes_all"] = memory["median"], memory["all"]
            results.append(r)
            print_table([r])
    print()
    print("summary: median step time; ratios are per-round paired ratios, median (min-max) over rounds")
    print_table(results)
    info["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                    "results": results,
                },
                f,
                indent=1,
            )
        print(f"results written to {args.json}")
    return results


if __name__ == "__main__":
    main()
