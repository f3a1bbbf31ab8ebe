"""The watchdog without MPI: timeout arguments, the environment variable, waiting without spinning, the error."""

import math
import os
import subprocess
import sys
import time

import pytest
from mpi_launch import ROOT

from collectives import watchdog


def test_timeout_arguments():
    assert watchdog.seconds(None) == watchdog.default
    assert watchdog.seconds(0) == math.inf and watchdog.seconds(2) == 2.0 and watchdog.seconds(0.5) == 0.5
    for bad in (-1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="timeout must be a"):
            watchdog.seconds(bad)


@pytest.mark.parametrize("text, expected", [("7", 7.0), ("0", math.inf), ("2.5", 2.5)])
def test_the_environment_variable_sets_the_default(text, expected):
    code = "import collectives.watchdog as w; print(w.default)"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLLECTIVES_TIMEOUT=text)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert float(out.stdout) == expected, out.stderr


def test_a_bad_environment_variable_is_named():
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLLECTIVES_TIMEOUT="soon")
    out = subprocess.run(
        [sys.executable, "-c", "import collectives"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode != 0 and "COLLECTIVES_TIMEOUT must be a number of seconds" in out.stderr


class _Request:
    """Completes ``after`` seconds from now, counting how often it was tested."""

    def __init__(self, after: float) -> None:
        self.done_at, self.tests = time.perf_counter() + after, 0

    def Test(self) -> bool:
        self.tests += 1
        return time.perf_counter() >= self.done_at


class _Census:
    def __init__(self, heard):
        self.heard, self.names, self.answered = heard, {}, 0

    def answer(self, collective, seq):
        self.answered += 1

    def take(self, collective, seq, grace):
        self.names[watchdog._code("broadcast")] = "broadcast"
        return self.heard


class _Ctx:
    def __init__(self, heard=None):
        self.rank, self.size, self.census = 0, 4, _Census(heard or {})


def test_waiting_sleeps_instead_of_spinning():
    req = _Request(0.2)
    start = time.process_time()
    watchdog.wait(req, _Ctx(), "allreduce", 1, math.inf)
    assert req.tests < 1000, f"{req.tests} tests in 0.2 s: that is spinning"  # a spin makes ~10^5
    assert time.process_time() - start < 0.1  # the CPU time of a 0.2 s wait


def test_a_timeout_names_the_call_and_the_ranks_that_did_not_answer(monkeypatch):
    monkeypatch.setattr(watchdog, "_abort_at_exit", lambda: None)  # this test process must not abort
    ctx = _Ctx(heard={2: (5, watchdog._code("allreduce")), 3: (4, watchdog._code("broadcast"))})
    start = time.perf_counter()
    with pytest.raises(watchdog.CollectiveTimeoutError) as e:
        watchdog.wait(_Request(math.inf), ctx, "allreduce", 5, 0.2)
    assert 0.2 <= time.perf_counter() - start < 2
    message = str(e.value)
    assert message.startswith(
        "allreduce #5 on rank 0: the other ranks did not all arrive within 0.2 s; missing: rank 1;"
    )
    assert "rank 3 is waiting in broadcast #4" in message and "rank 2" not in message
    assert ctx.census.answered > 0  # queries from other ranks were answered while waiting
