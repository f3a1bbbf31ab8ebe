"""A user's algorithm module written into a test's directory, and a launcher running commands from there.

Command lines must find ``package.module:function`` from the current directory, so the tests run
them with the temporary directory as their working directory (``mpi_launch.run_mpi`` always uses
the repository root).
"""

import subprocess
import sys

from mpi_launch import ROOT, launch_command, launch_env, run_command

SOURCE = '''
"""A user's allreduce module, outside the project: every rank gathers all buffers and sums them in rank order."""
from collectives import Cost


def gather_sum(t, buf, op):
    """Gather all, reduce in rank order."""
    p, r, n = t.size, t.rank, buf.size
    if p == 1:
        return
    slots = t.scratch(p * n, buf.dtype)
    t.copy(slots[r * n : (r + 1) * n], buf)
    for k in range(1, p):
        src = (r - k) % p
        yield t.sendrecv(buf, (r + k) % p, slots[src * n : (src + 1) * n], src, k)
    t.copy(buf, slots[:n])
    for i in range(1, p):
        t.reduce(op, buf, slots[i * n : (i + 1) * n])


def gather_sum_cost(p, nbytes, itemsize=1):
    n = nbytes // itemsize * itemsize
    return Cost(p - 1, (p - 1) * n, (p - 1) * n, p - 1, (p - 1) * n)


def broken(t, buf, op):
    """Planted bug: sends nothing, so every rank keeps its own data."""
    return
    yield


broken_cost = gather_sum_cost
'''


def write_user_module(directory) -> str:
    """Write the module as ``useralgo.py`` in ``directory``; returns the module name."""
    (directory / "useralgo.py").write_text(SOURCE)
    return "useralgo"


def run_python(args: list[str], cwd, nprocs: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python *args`` in ``cwd`` (under ``mpiexec -n nprocs`` if nprocs), killed with its ranks after ``timeout``."""
    cmd = [*(launch_command(nprocs) if nprocs else []), sys.executable, *args]
    return run_command(cmd, {**launch_env(), "PYTHONPATH": str(ROOT)}, cwd, timeout)
