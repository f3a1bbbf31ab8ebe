"""Launch a Python script under real ``mpiexec`` from a test, with a timeout, on MPICH or Open MPI.

The two launchers differ in what they need on a small machine: Open MPI refuses more ranks than
cores unless told ``--oversubscribe``, and refuses to run as root unless two environment variables
confirm it (CI runs as root). MPICH's Hydra needs neither. The implementation is read from
``mpiexec --version`` once, so the same tests run unchanged in either environment.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPENMPI_AS_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
# --oversubscribe as an environment variable, for launches this module does not build (a tool's own)
OPENMPI_OVERSUBSCRIBE = {"PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe"}


def mpiexec() -> str:
    """The ``mpiexec`` next to this Python (the pip MPICH or Open MPI wheel), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: pip install -e '.[test]' installs MPICH's")
    return found


@functools.cache
def implementation() -> str:
    """``"openmpi"`` or ``"mpich"``: which MPI the ``mpiexec`` above launches."""
    out = subprocess.run([mpiexec(), "--version"], capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    if "Open MPI" in text or "OpenRTE" in text:
        return "openmpi"
    if "HYDRA" in text or "MPICH" in text:
        return "mpich"
    raise RuntimeError(f"{mpiexec()} --version names neither MPICH nor Open MPI:\n{text}")


def launch_env() -> dict[str, str]:
    """The environment for an ``mpiexec`` run: this checkout first on PYTHONPATH, plus what Open MPI needs
    (oversubscription, which reaches ranks that the launched program starts itself, and running as root)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if implementation() == "openmpi":
        env.update(OPENMPI_OVERSUBSCRIBE)
        if os.geteuid() == 0:
            env.update(OPENMPI_AS_ROOT)
    return env


def launch_command(nprocs: int) -> list[str]:
    """``mpiexec -n N`` with what this implementation needs to run more ranks than cores."""
    extra = ["--oversubscribe"] if implementation() == "openmpi" else []
    return [mpiexec(), *extra, "-n", str(nprocs)]


def kill_session(sid: int) -> None:
    """SIGKILL every process in session ``sid``: the launcher and every rank it started.

    Killing ``mpiexec`` alone is not enough: Open MPI puts each rank in a process group of its
    own, and a rank that outlives its launcher keeps the output pipes open (and a core busy).
    """
    victims = {sid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the fields after the command name (which may hold spaces) start with state, ppid, pgrp, session
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[3]) == sid:
            victims.add(int(stat.parent.name))
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:  # where there is no /proc: at least the launcher's process group
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_mpi(
    nprocs: int, args: list[str], timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python *args`` on ``nprocs`` ranks, killed after ``timeout`` seconds.

    With ``check`` (the default) a non-zero exit fails the test with all output; without it the
    caller inspects the exit code itself (for tests of failures). ``env`` adds variables.
    """
    done = run_command([*launch_command(nprocs), sys.executable, *args], {**launch_env(), **(env or {})}, ROOT, timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(done.args)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


# What a launcher prints when it failed to start its own runtime, before any rank ran: Open MPI's PRRTE
# sometimes cannot start its PMIx listener on a busy machine (seen once in CI, exit 213). Such a launch is
# tried again (at most LAUNCH_RETRIES more times); a rank's own failure never matches and is never retried.
LAUNCHER_STARTUP_FAILURES = ("The PMIx server's listener thread failed to start",)
LAUNCH_RETRIES = 2


def launcher_failed_to_start(done: subprocess.CompletedProcess) -> bool:
    """True when ``mpiexec`` itself failed to start (nothing ran), as told by its known messages."""
    return done.returncode != 0 and not done.stdout and any(m in done.stderr for m in LAUNCHER_STARTUP_FAILURES)


def run_command(cmd: list[str], env: dict[str, str], cwd: Any, timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a session of its own, so a timeout kills the ranks too, not only the launcher.

    A launch whose launcher failed to start its runtime (``launcher_failed_to_start``) is tried again after a
    second, up to ``LAUNCH_RETRIES`` times; the last attempt's result is returned whatever it is.
    """
    for attempt in range(LAUNCH_RETRIES + 1):
        done = _run_once(cmd, env, cwd, timeout)
        if not launcher_failed_to_start(done) or attempt == LAUNCH_RETRIES:
            return done
        print(f"launcher failed to start, trying again: {done.stderr.strip()[:200]}", file=sys.stderr)
        time.sleep(1.0)
    raise AssertionError("unreachable")


def _run_once(cmd: list[str], env: dict[str, str], cwd: Any, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s\nstdout:\n{out}\nstderr:\n{err}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
