"""The launcher every multi-rank test relies on: it detects the MPI, reports exit codes, and a
timeout ends every rank (a hung test must not leave ranks behind, busy on a core)."""

import sys
import time
from pathlib import Path

import pytest
from mpi_launch import LAUNCH_RETRIES, implementation, launch_command, run_command, run_mpi

HANG = """
import sys, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
if comm.Get_rank() == 0:
    comm.recv(source=1)  # never sent: rank 0 waits inside MPI
else:
    time.sleep(600)  # the others outside it
"""


def processes_running(script: Path) -> list[int]:
    """Process ids whose command line names ``script``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(script).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_the_implementation_is_detected_and_oversubscription_allowed():
    impl = implementation()
    assert impl in ("mpich", "openmpi")
    assert ("--oversubscribe" in launch_command(8)) == (impl == "openmpi")


@pytest.mark.mpi
def test_a_failing_rank_gives_its_exit_code_and_output(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nfrom mpi4py import MPI\nprint('rank output')\nsys.exit(3)\n")
    proc = run_mpi(2, [str(script)], timeout=60, check=False)
    assert proc.returncode != 0 and "rank output" in proc.stdout
    with pytest.raises(AssertionError, match="exited"):
        run_mpi(2, [str(script)], timeout=60)


@pytest.mark.mpi
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finding leftover ranks needs /proc")
def test_a_timeout_kills_every_rank(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(HANG)
    start = time.monotonic()
    with pytest.raises(AssertionError, match="timed out after 3s"):
        run_mpi(3, [str(script)], timeout=3)
    assert time.monotonic() - start < 30  # returned, rather than waiting on pipes a rank kept open
    deadline = time.monotonic() + 10
    while processes_running(script) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_running(script) == []


# a stand-in launcher: fails like Open MPI's PRRTE when it cannot start its PMIx listener, FAILS times, then runs
FLAKY_LAUNCHER = """
import sys
from pathlib import Path
count = Path(sys.argv[1])
tries = int(count.read_text()) if count.exists() else 0
count.write_text(str(tries + 1))
if tries < int(sys.argv[2]):
    print("The PMIx server's listener thread failed to start. We cannot", file=sys.stderr)
    sys.exit(213)
print("ran")
"""


@pytest.mark.parametrize("failures", [1, LAUNCH_RETRIES, LAUNCH_RETRIES + 1])
def test_a_launcher_that_failed_to_start_is_tried_again(tmp_path, failures):
    script, count = tmp_path / "launcher.py", tmp_path / "count"
    script.write_text(FLAKY_LAUNCHER)
    done = run_command([sys.executable, str(script), str(count), str(failures)], {}, tmp_path, timeout=60)
    ran = failures <= LAUNCH_RETRIES
    assert (done.returncode, done.stdout) == ((0, "ran\n") if ran else (213, ""))
    assert int(count.read_text()) == min(failures + 1, LAUNCH_RETRIES + 1)


def test_a_failure_after_ranks_ran_is_not_retried(tmp_path):
    script, count = tmp_path / "launcher.py", tmp_path / "count"
    script.write_text(FLAKY_LAUNCHER.replace('print("The PMIx', 'print("partial output")\n    print("The PMIx'))
    done = run_command([sys.executable, str(script), str(count), "1"], {}, tmp_path, timeout=60)
    assert done.returncode == 213 and int(count.read_text()) == 1
