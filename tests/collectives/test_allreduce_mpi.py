"""Every allreduce algorithm under real mpiexec, against a numpy reference."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_allreduce_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_allreduce_matches_numpy(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert f"{nprocs} ranks: 0 failures" in proc.stdout
