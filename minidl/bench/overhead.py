"""Per-op Python overhead of minidl's autograd on small tensors, against PyTorch CPU when installed.

Runs chains of small-tensor ops forward and backward (where the numpy work is negligible, so the
time is the engine's own: ``Function.apply``, Tensor creation, the backward loop) and reports the
time per op (graph node). With PyTorch importable the same chains run in PyTorch, one chain of
each engine in turn (:func:`minidl.bench.timing.interleaved`), and the ratio is the median
(min-max) of the per-pair ratios. ``python -m minidl.bench --op-overhead [--length N --size N]``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from minidl.bench.timing import interleaved, ratio_summary

# Each chain is one step of a loop body applied ``length`` times; "ops" counts the graph nodes per step.
CHAINS: dict[str, tuple[int, Callable[[Any, Any, Any], Any]]] = {
    "elementwise (mul, add, tanh)": (3, lambda y, x, w: (y * 0.5 + x).tanh()),
    "mlp-like (matmul, add, relu)": (3, lambda y, x, w: (y @ w + x).relu()),
    "mixed (sub, exp, div, sum-broadcast)": (4, lambda y, x, w: (y - x).exp() / (1.0 + y.sum(-1, keepdim=True))),
}


def chain_inputs(engine: str, size: int) -> tuple[Any, Any]:
    """Two small float32 leaves (x, w) requiring grad, the same values for both engines."""
    rng = np.random.default_rng(0)
    x, w = (rng.standard_normal((size, size)).astype(np.float32) * 0.1 for _ in range(2))
    if engine == "torch":
        import torch

        return torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    import minidl

    return minidl.tensor(x, requires_grad=True), minidl.tensor(w, requires_grad=True)


def time_chain(inputs: tuple[Any, Any], step: Callable, length: int) -> float:
    """Seconds for one forward + backward through ``length`` applications of ``step``."""
    x, w = inputs
    x.grad = None
    w.grad = None
    start = time.perf_counter()
    y = x
    for _ in range(length):
        y = step(y, x, w)
    y.sum().backward()
    return time.perf_counter() - start


def op_overhead(length: int, size: int, pairs: int, use_torch: bool) -> list[dict[str, Any]]:
    """Time every chain on each engine, interleaved; print and return microseconds per op and the ratios."""
    engine_names = ["minidl"] + (["torch"] if use_torch else [])
    inputs = {e: chain_inputs(e, size) for e in engine_names}
    print(
        f"chains of {length} steps on {size}x{size} float32, forward + backward, {pairs} interleaved pairs; "
        "time per op (graph node)"
    )
    header = f"{'chain':38} {'minidl us/op':>12}"
    if use_torch:
        header += f" {'torch us/op':>11} {'ratio median':>12} {'ratio min-max':>14}"
    print(header)
    rows, all_ratios = [], []
    for name, (ops_per_step, step) in CHAINS.items():
        n_ops = ops_per_step * length + 1  # + the final sum
        engines = {e: (lambda e=e, step=step: time_chain(inputs[e], step, length)) for e in engine_names}
        interleaved(engines, 2)  # warm up both engines (imports, caches, allocator)
        times = interleaved(engines, pairs)
        row: dict[str, Any] = {"chain": name, "us_per_op": {e: 1e6 * min(t) / n_ops for e, t in times.items()}}
        line = f"{name:38} {row['us_per_op']['minidl']:12.2f}"
        if use_torch:
            row["ratio"] = r = ratio_summary(times["minidl"], times["torch"])
            all_ratios += [a / b for a, b in zip(times["minidl"], times["torch"])]
            line += f" {row['us_per_op']['torch']:11.2f} {r['median']:12.2f} {r['min']:6.2f}-{r['max']:<6.2f}"
        print(line)
        rows.append(row)
    if all_ratios:
        print(
            f"overall: minidl per-op overhead is {statistics.median(all_ratios):.2f}x PyTorch's "
            f"(median of paired ratios; min {min(all_ratios):.2f}, max {max(all_ratios):.2f})"
        )
    return rows
