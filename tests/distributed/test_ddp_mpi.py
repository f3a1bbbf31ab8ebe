"""DistributedDataParallel under real mpiexec, on 1 to 4 ranks (3 is not a power of two)."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_ddp_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_ddp_properties(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert f"{nprocs} ranks: DDP ok" in proc.stdout
