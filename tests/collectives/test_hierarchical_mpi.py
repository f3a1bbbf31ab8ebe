"""The hierarchical allreduce over Split communicators under mpiexec (tests/collectives/mpi_hierarchical_check.py)."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_hierarchical_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4, 5])
def test_hierarchical_allreduce_matches_numpy(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert "hierarchical allreduce ok" in proc.stdout
