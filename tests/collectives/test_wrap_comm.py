"""Communicators made from ``collectives.wrap(...)`` stay wrapped; ``Iallreduce`` is routed; under real mpiexec."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_wrap_comm_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_new_communicators_keep_the_wrapping_and_iallreduce_is_routed(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=120)
    assert f"{nprocs} ranks: 0 failures" in proc.stdout
