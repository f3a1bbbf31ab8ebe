"""Peak memory of one training step, per engine, each measured in a fresh process (Linux).

After warm-up, freed memory is returned to the OS (``malloc_trim``), the resident-set
high-water mark is reset (``/proc/self/clear_refs``), one step runs, and the peak is read from
``/proc/self/status``: the extra resident memory the step needed above the model, optimizer
state and data. The median over ``--memory-repeats`` processes per engine is reported, the
engines' processes interleaved.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Any

from minidl.bench.workloads import minidl_step, numpy_floor_step, set_threads, torch_step


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
