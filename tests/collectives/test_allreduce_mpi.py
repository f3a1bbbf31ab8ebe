"""Every collective, the non-blocking API, the mismatch check and the mpi4py wrapper under real mpiexec.

One launch per rank count runs the whole matrix (``mpi_allreduce_check.py``): launches cost
about half a second each here, the cases a few milliseconds.
"""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_allreduce_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_collectives_match_numpy(nprocs):
    """Every algorithm, op and dtype."""
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert f"{nprocs} ranks: 0 failures" in proc.stdout


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("nprocs", [5, 8])
def test_collectives_on_more_ranks_than_cores(nprocs):
    """5 and 8 ranks oversubscribe the 2-core machine: ops sum and max on int32 and float64 only,
    every algorithm, size, building block, API and error case still."""
    proc = run_mpi(nprocs, [CHECK, "--quick"], timeout=240)
    assert f"{nprocs} ranks: 0 failures" in proc.stdout
