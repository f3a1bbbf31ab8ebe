"""Per-op Python overhead of minidl's autograd on small tensors, against PyTorch CPU when installed.

Runs chains of small-tensor ops forward and backward (where the numpy work is negligible, so the
time is the engine's own: Function.apply, Tensor creation, the backward loop) and reports the
time per op. With PyTorch importable, the same chains run in PyTorch in the same process,
interleaved with minidl's runs, and the report gives the paired ratio minidl / PyTorch
(median, min-max over repeats). This is a benchmark, not a test: timings on a shared machine
are noisy.

    python benchmarks/op_overhead.py                # defaults: 200-op chains, 8x8 tensors
    python benchmarks/op_overhead.py --repeats 20 --size 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

# Each chain is one step of a loop body applied ``length`` times; "ops" counts the graph nodes per step.
CHAINS: dict[str, tuple[int, Callable[[Any, Any, Any], Any]]] = {
    "elementwise (mul, add, tanh)": (3, lambda y, x, w: (y * 0.5 + x).tanh()),
    "mlp-like (matmul, add, relu)": (3, lambda y, x, w: (y @ w + x).relu()),
    "mixed (sub, exp, div, sum-broadcast)": (4, lambda y, x, w: (y - x).exp() / (1.0 + y.sum(-1, keepdim=True))),
}


def _minidl_inputs(size: int) -> tuple[Any, Any]:
    import minidl

    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((size, size)).astype(np.float32) * 0.1, requires_grad=True)
    w = minidl.tensor(rng.standard_normal((size, size)).astype(np.float32) * 0.1, requires_grad=True)
    return x, w


def _torch_inputs(size: int) -> tuple[Any, Any]:
    import torch

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((size, size)).astype(np.float32) * 0.1, requires_grad=True)
    w = torch.tensor(rng.standard_normal((size, size)).astype(np.float32) * 0.1, requires_grad=True)
    return x, w


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/op_overhead.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--length", type=int, default=200, help="steps per chain (default: 200)")
    parser.add_argument("--size", type=int, default=8, help="tensors are size x size float32 (default: 8)")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per chain and engine (default: 15)")
    parser.add_argument("--no-torch", action="store_true", help="time minidl only")
    args = parser.parse_args(argv)
    if args.length < 1 or args.size < 1 or args.repeats < 1:
        parser.error("--length, --size and --repeats must be at least 1")

    torch = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(1)  # small tensors: threads only add noise
        except ImportError:
            print("PyTorch is not installed: timing minidl only (install torch to get the ratio)")
    m_inputs = _minidl_inputs(args.size)
    t_inputs = _torch_inputs(args.size) if torch else None

    print(
        f"chains of {args.length} steps on {args.size}x{args.size} float32, forward + backward, "
        f"{args.repeats} interleaved repeats; time per op (graph node)"
    )
    header = f"{'chain':38} {'minidl us/op':>12}"
    if torch:
        header += f" {'torch us/op':>11} {'ratio median':>12} {'ratio min-max':>14}"
    print(header)
    all_ratios = []
    for name, (ops_per_step, step) in CHAINS.items():
        n_ops = ops_per_step * args.length + 1  # + the final sum
        for _ in range(2):  # warm up both engines (imports, caches, allocator)
            time_chain(m_inputs, step, args.length)
            if torch:
                time_chain(t_inputs, step, args.length)
        m_times, t_times = [], []
        for _ in range(args.repeats):
            m_times.append(time_chain(m_inputs, step, args.length) / n_ops)
            if torch:
                t_times.append(time_chain(t_inputs, step, args.length) / n_ops)
        line = f"{name:38} {1e6 * min(m_times):12.2f}"
        if torch:
            ratios = [m / t for m, t in zip(m_times, t_times)]
            all_ratios += ratios
            line += (
                f" {1e6 * min(t_times):11.2f} {statistics.median(ratios):12.2f} {min(ratios):6.2f}-{max(ratios):<6.2f}"
            )
        print(line)
    if torch:
        print(
            f"overall: minidl per-op overhead is {statistics.median(all_ratios):.2f}x PyTorch's "
            f"(median of paired ratios; min {min(all_ratios):.2f}, max {max(all_ratios):.2f})"
        )


if __name__ == "__main__":
    main()
