"""DistributedDataParallel accepts ``collectives.wrap(MPI.COMM_WORLD)``, under real mpiexec."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_ddp_wrapped_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_ddp_on_a_wrapped_communicator_trains_as_on_the_plain_one(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=180)
    assert f"{nprocs} ranks: DDP on a wrapped communicator ok" in proc.stdout
