"""The mismatch check of blocking calls, with small allreduces carried in its messages, under real mpiexec.

``mpi_fused_check.py`` checks results against numpy and recursive doubling run unchecked, and
every mismatch with each rank in turn as the odd one out; the rank counts cover a power of two
and the fold of other counts (both sides of it: the rank that sits out and the one that stands in).
"""

import time
from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_fused_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3, 4, 5])
def test_fused_results_and_mismatches(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert f"{nprocs} ranks: 0 failures" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.mpi
def test_a_rank_missing_from_a_fused_allreduce_is_named():
    """Four ranks: rank 1's partners time out first, then the rest, whose partners are waiting, not missing."""
    start = time.monotonic()
    proc = run_mpi(4, [CHECK, "missing"], timeout=60, check=False)
    took = time.monotonic() - start
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "CollectiveTimeoutError: allreduce #2 on rank" in proc.stderr, proc.stderr
    assert "within 2 s; missing: rank 1 (" in proc.stderr, proc.stderr
    assert "finished the second allreduce" not in proc.stdout
    assert 2 <= took < 25, f"the job took {took:.1f} s to end (timeout 2 s)"
