"""``DistributedDataParallel.join()`` under mpiexec: uneven shards finish without hanging (each run has a
timeout) and end at a numpy replay of the per-step contributions (tests/distributed/mpi_join_check.py)."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).with_name("mpi_join_check.py"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3, 4])
@pytest.mark.parametrize("divisor", ["active", "world"])
def test_uneven_shards_finish_and_match_the_replay(nprocs, divisor):
    proc = run_mpi(nprocs, [CHECK, divisor, "flat"], timeout=120)
    assert "join ok" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [3, 4])
def test_join_with_a_hierarchical_allreduce(nprocs):
    proc = run_mpi(nprocs, [CHECK, "active", "2"], timeout=120)
    assert "join ok" in proc.stdout
