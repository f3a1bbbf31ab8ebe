"""The threading trap: numba's OpenMP workers and OpenBLAS's workers fighting over a conv forward.

Each configuration runs in its own process (numba chooses a threading layer once per process),
the configurations interleaved over rounds; see docs/performance.md for why minidl's kernels
run serially on the calling thread.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

import numpy as np

from minidl.bench.timing import time_steps

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
