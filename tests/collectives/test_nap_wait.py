"""Large exchanges waited for by napping when ranks share cores (collectives.mpi_transport), under mpiexec."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_nap_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3, 4])
def test_napping_waits_give_numpys_answer(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=180)
    assert f"{nprocs} ranks: 0 failures" in proc.stdout, proc.stdout + proc.stderr
