"""Launch a run that is expected to fail and report how it ended: exit code, output, seconds to exit.

A hang must fail the test by itself, not by the suite's timeout: the run gets its own session and,
past ``timeout``, the whole process group (mpiexec and every rank) is killed and the test fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from mpi_launch import LAUNCH_RETRIES, ROOT, launch_command, launch_env, launcher_failed_to_start, mpiexec

__all__ = ["ROOT", "Ended", "env", "launch_command", "mpiexec", "program_lines", "run"]


@dataclass
class Ended:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def program_lines(text: str) -> list[str]:
    """The non-empty lines the program printed, without the launcher's own report of the failure.

    Open MPI's launcher adds a notice ("prterun detected that one or more processes exited with
    non-zero status...") framed by rules of dashes, and sometimes its daemons' own lines
    ("[host:pid] PMIX ERROR: ..."); MPICH's adds nothing when ranks exit.
    """
    lines, framed = [], False
    for line in text.splitlines():
        if len(line) >= 20 and set(line) == {"-"}:
            framed = not framed
        elif not framed and line.strip() and not re.match(r"\[[\w.-]+:\d+\] ", line):
            lines.append(line)
    return lines


def env() -> dict[str, str]:
    """The environment a launched run needs to import this checkout."""
    return launch_env()


def run(args: list[str], nprocs: int | None = None, timeout: float = 60) -> Ended:
    """``python *args`` (under ``mpiexec -n nprocs`` if given); AssertionError if it is still running at ``timeout``.

    A launch whose launcher failed to start its own runtime is tried again, as ``mpi_launch.run_command`` does."""
    for attempt in range(LAUNCH_RETRIES + 1):
        ended = _run_once(args, nprocs, timeout)
        done = subprocess.CompletedProcess(args, ended.returncode, ended.stdout, ended.stderr)
        if not launcher_failed_to_start(done) or attempt == LAUNCH_RETRIES:
            return ended
        time.sleep(1.0)
    raise AssertionError("unreachable")


def _run_once(args: list[str], nprocs: int | None, timeout: float) -> Ended:
    cmd = [sys.executable, *args] if nprocs is None else [*launch_command(nprocs), sys.executable, *args]
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
