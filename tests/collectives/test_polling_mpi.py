"""The always-napping transport (``collectives.mpi_transport.MPITransport(nap_bytes=0)``) under real mpiexec."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_polling_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3, 4])
def test_polling_waits_give_every_algorithms_exact_sum(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert f"{nprocs} ranks: polling ok" in proc.stdout, proc.stdout + proc.stderr
