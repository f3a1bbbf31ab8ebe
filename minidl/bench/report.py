"""What a benchmark run records beside its timings (machine, load, versions, BLAS, command), and its tables.

Every number quoted from a run should be traceable to a JSON file written by ``--json``, which
holds the raw per-step timings next to this context, so the tables can be rebuilt from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
from typing import Any

# environment variables that change which BLAS kernel runs (or how many threads it uses)
BLAS_ENVIRONMENT = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


# set on some machines for older OpenBLAS builds; they force a kernel (or cache size) that slows a
# current numpy, so the benchmark runs without them unless told to keep them (issue 16)
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REMOVED_MARK = "MINIDL_BENCH_REMOVED_BLAS_ENV"  # what the re-executed process was started without


def drop_blas_overrides(argv: list[str]) -> None:
    """Re-execute this benchmark without ``BLAS_OVERRIDES`` (OpenBLAS reads them when numpy loads it,
    so they cannot be unset in a running process); no-op if none is set or ``--keep-blas-env`` is given.
    The JSON then records what was removed, and threadpoolctl's report names the kernel that ran."""
    found = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
    if not found or "--keep-blas-env" in argv:
        return
    env = {k: v for k, v in os.environ.items() if k not in found}
    env[REMOVED_MARK] = json.dumps(found)
    listed = ", ".join(f"{k}={v}" for k, v in found.items())
    print(f"bench: running without {listed} (--keep-blas-env keeps them)", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "minidl.bench", *argv], env)


def torch_info() -> dict[str, Any]:
    """PyTorch's version, threads and the libraries its CPU kernels use (its BLAS, oneDNN, SIMD level),
    from ``torch.__config__.show()``: threadpoolctl does not see a statically linked MKL."""
    torch = sys.modules["torch"]
    config = torch.__config__.show()
    info: dict[str, Any] = {"version": torch.__version__, "threads": torch.get_num_threads()}
    for line in config.splitlines():
        line = line.strip(" -")
        if "Math Kernel Library" in line:
            info["mkl"] = line
        elif "MKL-DNN" in line or "oneDNN" in line:
            info["onednn"] = line
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        found = re.search(rf"\b{key}=([^,\s]+)", config)
        if found:
            info[key.lower()] = found.group(1)
    with contextlib.suppress(AttributeError):
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's report of the BLAS/OpenMP libraries loaded in this process (empty without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: lib.get(k) for k in ("user_api", "internal_api", "version", "num_threads", "architecture", "filepath")}
        for lib in threadpool_info()
    ]


def machine_info(argv: list[str] | None = None) -> dict[str, Any]:
    """CPU, cores, load, library versions, BLAS libraries and the environment that steers them, the command."""
    import numba
    import numpy

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "load_average": load_average(),
        "blas": blas_info(),
        "environment": {k: os.environ[k] for k in BLAS_ENVIRONMENT if k in os.environ},
        "environment_removed": json.loads(os.environ.get(REMOVED_MARK, "{}")),
        "command": [sys.executable, "-m", "minidl.bench", *(sys.argv[1:] if argv is None else argv)],
    }
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
        info["torch_libraries"] = torch_info()
    return info


def blas_summary(info: dict[str, Any]) -> str:
    """One line: numpy's BLAS (library, version, kernel, threads), PyTorch's, and any environment removed."""
    parts = [
        f"numpy {lib['internal_api']} {lib['version']} ({lib['architecture']} kernels, {lib['num_threads']} threads)"
        for lib in info["blas"]
        if lib["user_api"] == "blas"
    ] or ["numpy: threadpoolctl not installed, BLAS unknown"]
    t = info.get("torch_libraries")
    if t:
        parts.append(f"torch {t.get('blas_info', '?')}, {t.get('cpu_capability', '?')}, {t['threads']} threads")
    removed = info.get("environment_removed")
    if removed:
        parts.append("run without " + ", ".join(f"{k}={v}" for k, v in removed.items()))
    return "; ".join(parts)


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)


def ratio_text(r: dict[str, float] | None) -> str:
    """``median [quartiles] (min-max)`` of per-pair ratios: the quartiles say whether a median is evidence."""
    if r is None:
        return "-"
    return f"{r['median']:.2f}x [{r['q1']:.2f}-{r['q3']:.2f}] ({r['min']:.2f}-{r['max']:.2f})"


def _mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    """One row per model and thread count: median step times, paired ratios median (min-max), peak memory."""
    head = (
        f"{'model':<13} {'thr':>3} {'minidl ms':>9} {'torch ms':>8} {'floor ms':>8} "
        f"{'minidl/torch':>30} {'minidl/floor':>30} {'minidl/numpy-ref':>30}  peak MiB minidl/torch"
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
            f"{ratio_text(r['ratios'].get('minidl/torch')):>30} "
            f"{ratio_text(r['ratios'].get('minidl/numpy-floor')):>30} "
            f"{ratio_text(r['ratios'].get('minidl/minidl-numpy')):>30}  {mem_s}"
        )
