"""ZeroRedundancyOptimizer under real mpiexec, on 1 to 4 ranks (3 is not a power of two)."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).parent / "mpi_zero_check.py")


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_zero_equals_ddp_with_the_unsharded_optimizer_and_shards_its_state(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=300)
    assert f"{nprocs} ranks: ZeRO ok" in proc.stdout
