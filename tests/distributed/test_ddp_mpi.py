"""DistributedDataParallel under real mpiexec, on 1 to 4 ranks (3 is not a power of two)."""

from pathlib import Path

import mpi_failure
import pytest
from mpi_launch import run_mpi

HERE = Path(__file__).parent
CHECK = str(HERE / "mpi_ddp_check.py")


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_ddp_properties(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert f"{nprocs} ranks: DDP ok" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize(
    "case, expected",
    [
        ("shape", "parameter '0.weight' is (5, 3) float32 on rank 1 but (4, 3) float32 on rank 0"),
        ("extra", "parameter '3.weight' exists on rank 1 but not on rank 0"),
    ],
)
def test_different_models_on_different_ranks_fail_on_every_rank_at_construction(case, expected):
    proc = mpi_failure.run([str(HERE / "mpi_ddp_mismatch.py"), case], nprocs=3, timeout=60)
    assert proc.returncode != 0
    assert "constructed" not in proc.stdout
    # every rank raised, with the same message naming the tensor and the rank
    assert proc.stderr.count(f"DistributedDataParallel: the ranks hold different models: {expected}") == 3, proc.stderr
    assert proc.seconds < 30, proc.seconds


@pytest.mark.mpi
def test_a_stalled_rank_makes_the_other_raise_a_timeout_naming_it_and_the_job_ends():
    proc = mpi_failure.run([str(HERE / "mpi_ddp_stall.py")], nprocs=2, timeout=90)
    assert proc.returncode != 0
    assert "finished" not in proc.stdout
    assert "CollectiveTimeoutError" in proc.stderr and "rank 1" in proc.stderr, proc.stderr
    assert proc.seconds < 60, proc.seconds
