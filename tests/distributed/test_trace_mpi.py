"""Training traces under real mpiexec: every rank's tracks, and DDP's bucket intervals exactly."""

from pathlib import Path

import pytest
from mpi_launch import run_mpi

CHECK = str(Path(__file__).parent / "mpi_trace_check.py")


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_trace_holds_every_rank_and_exactly_ddps_bucket_intervals(tmp_path, nprocs):
    proc = run_mpi(nprocs, [CHECK, str(tmp_path / "trace.json")], timeout=120)
    assert f"{nprocs} ranks: trace ok" in proc.stdout, proc.stdout + proc.stderr
