"""Launch a run that is expected to fail and report how it ended: exit code, output, seconds to exit.

A hang must fail the test by itself, not by the suite's timeout: the run gets its own session and,
past ``timeout``, the whole process group (mpiexec and every rank) is killed and the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from mpi_launch import ROOT, mpiexec

__all__ = ["ROOT", "Ended", "env", "mpiexec", "run"]


@dataclass
class Ended:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def env() -> dict[str, str]:
    """The environment a launched run needs to import this checkout."""
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run(args: list[str], nprocs: int | None = None, timeout: float = 60) -> Ended:
    """``python *args`` (under ``mpiexec -n nprocs`` if given); AssertionError if it is still running at ``timeout``."""
    cmd = [sys.executable, *args] if nprocs is None else [mpiexec(), "-n", str(nprocs), sys.executable, *args]
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env(), start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} still running after {timeout} s (a hang)\n{out}\n{err}") from None
    return Ended(proc.returncode, out, err, time.monotonic() - start)
