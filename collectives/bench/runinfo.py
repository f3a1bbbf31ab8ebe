"""Where and how a benchmark ran: machine, load, versions, command. Stored with every result.

The machine this project is measured on is shared; a timing means little without the load
average beside it, and nothing at all without the command that produced it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> str | None:
    """The commit of the collectives package's checkout (with '+dirty' when it has changes), or None."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def run_info(mpi_library: str) -> dict[str, Any]:
    """The machine (host, CPU, cores), the load now, the versions and the command line."""
    import mpi4py
    import numpy

    return {
        "machine": {
            "host": platform.node(),
            "system": f"{platform.system()} {platform.release()}",
            "cpu": _cpu_model() or platform.processor(),
            "cores": os.cpu_count(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": load_average(),
        "versions": {
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "mpi4py": mpi4py.__version__,
            "mpi": mpi_library,
            "collectives": git_commit(),
        },
        "command": " ".join([os.path.basename(sys.executable), "-m", "collectives.bench", *sys.argv[1:]]),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
