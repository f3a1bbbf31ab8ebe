"""A failing rank ends the whole job promptly, with its error, under real mpiexec (issue 13).

Each case launches ``mpi_failure_check.py`` with a subprocess timeout far below pytest's, and
checks the exit status, the message and how long the job took to end.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpi_launch import ROOT, mpiexec

CHECK = str(Path(__file__).with_name("mpi_failure_check.py"))


def launch(mode: str, nprocs: int = 2, limit: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLLECTIVES_TIMEOUT="30")
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [mpiexec(), "-n", str(nprocs), sys.executable, CHECK, mode],
            capture_output=True,
            text=True,
            timeout=limit,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{mode}: the job did not end within {limit} s (a hang)\n{e.stdout}\n{e.stderr}") from None
    return proc, time.monotonic() - start


@pytest.mark.mpi
def test_an_exception_on_one_rank_ends_the_job_with_its_traceback_once():
    proc, took = launch("raise")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("ValueError: rank 1 broke between collectives") == 1, proc.stderr
    assert "collectives: rank 1 of 2 failed; ending the whole job" in proc.stderr
    assert "finished the second allreduce" not in proc.stdout
    assert took < 20, f"the job took {took:.1f} s to end"


@pytest.mark.mpi
def test_sys_exit_with_a_status_ends_the_job_with_that_status():
    proc, took = launch("exit")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "collectives: rank 1 of 2 exits with status 3; ending the whole job" in proc.stderr
    assert "finished the second allreduce" not in proc.stdout
    assert took < 20, f"the job took {took:.1f} s to end"


@pytest.mark.mpi
@pytest.mark.parametrize("mode", ["missing", "nohook", "imissing"])
def test_a_rank_that_never_arrives_is_named_after_the_timeout(mode):
    proc, took = launch(mode, nprocs=3)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    call = "iallreduce" if mode == "imissing" else "allreduce"
    assert f"CollectiveTimeoutError: {call} #2 on rank" in proc.stderr, proc.stderr
    assert "within 2 s; missing: rank 1 (" in proc.stderr, proc.stderr
    assert "finished the second allreduce" not in proc.stdout
    assert 2 <= took < 25, f"the job took {took:.1f} s to end (timeout 2 s)"


@pytest.mark.mpi
def test_a_local_error_in_the_wrapper_raises_on_every_rank():
    proc, took = launch("wrap")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rank 1 raised ValueError: Allreduce: send buffer (5 x float64) and receive buffer (4 x float64)" in (
        proc.stdout
    )
    assert "rank 0 raised CollectiveMismatchError: allreduce: rank 1 was called with invalid arguments" in proc.stdout
    assert took < 20, f"the job took {took:.1f} s to end"


@pytest.mark.mpi
def test_a_bad_timeout_or_link_on_one_rank_raises_on_every_rank():
    proc, took = launch("args")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "rank 1 raised ValueError for the bad timeout: timeout must be a non-negative number" in out
    assert "rank 0 raised CollectiveMismatchError for the bad timeout: allreduce: rank 1 was called with" in out
    assert "rank 1 raised ValueError for the bad link: allreduce: cannot read the link '10Gbps'" in out
    assert "rank 0 raised CollectiveMismatchError for the bad link: allreduce: rank 1 was called with" in out
    assert took < 20, f"the job took {took:.1f} s to end"
