"""A user's algorithm named ``package.module:function`` on every command line that takes an algorithm name.

The module lives in a temporary directory that is the commands' current directory, as a user's
would; nothing registers it beforehand.
"""

from __future__ import annotations

import sys

import pytest
from mpi_launch import ROOT
from user_algorithm_source import run_python, write_user_module

from collectives.algorithms import ALGORITHMS, resolve, unregister


@pytest.fixture
def user_dir(tmp_path):
    write_user_module(tmp_path)
    return tmp_path


@pytest.fixture
def registry_restored():
    """Unregister whatever a test registers and forget the modules it imported, for the tests after it."""
    names, modules = set(ALGORITHMS), set(sys.modules)
    yield
    for name in set(ALGORITHMS) - names:
        unregister(name)
    for module in set(sys.modules) - modules:
        del sys.modules[module]


def test_sim_check_run_and_sweep_take_a_user_algorithm(user_dir):
    proc = run_python(["-m", "collectives.sim", "check", "useralgo:gather_sum", "--quick"], user_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all checks passed" in proc.stdout and "useralgo:gather_sum" in proc.stdout
    proc = run_python(["-m", "collectives.sim", "check", "useralgo:broken", "--quick"], user_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the harness catches the planted bug
    proc = run_python(["-m", "collectives.sim", "run", "useralgo:gather_sum", "--ranks", "8", "--size", "1M"], user_dir)
    assert proc.returncode == 0, proc.stderr
    # p-1 = 7 messages of the whole megabyte from the busiest rank, as the closed form declares
    assert "busiest rank: 7 messages (declared 7)" in proc.stdout
    proc = run_python(
        ["-m", "collectives.sim", "sweep", "--algorithms", "useralgo:gather_sum,ring", "--ranks", "2..8",
         "--sizes", "1K..1M:x32"],
        user_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "= useralgo:gather_sum" in proc.stdout


def test_bench_runs_a_user_algorithm_under_mpiexec(user_dir):
    args = ["-m", "collectives.bench", "-a", "useralgo:gather_sum", "-b", "8", "-e", "1K", "-f", "32"]
    proc = run_python([*args, "-r", "1", "-n", "2", "-w", "1"], user_dir, nprocs=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "useralgo:gather_sum (pre-declared) vs MPI" in proc.stdout
    assert "# Out of bounds values : 0 OK" in proc.stdout


def test_trainer_takes_a_user_algorithm(user_dir):
    args = ["-m", "minidl.train", "--algorithm", "useralgo:gather_sum", "--epochs", "1", "--batch-size", "128"]
    proc = run_python(
        [*args, "--base-batch", "128", "--no-progress", "--checkpoint-dir", str(user_dir)], user_dir, 2, 300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "allreduce=useralgo:gather_sum" in proc.stdout


def test_mistakes_are_one_line_naming_the_reference(user_dir):
    proc = run_python(["-m", "collectives.sim", "check", "useralgo:nope"], user_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "python -m collectives.sim: error: allreduce: algorithm 'useralgo:nope': module 'useralgo' has no 'nope'"
    )
    proc = run_python(["-m", "collectives.sim", "check", "nosuchmodule:f"], user_dir)
    assert proc.returncode == 2 and "cannot import 'nosuchmodule'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resolve_registers_once_and_reuses_a_registered_function(user_dir, monkeypatch, registry_restored):
    monkeypatch.chdir(user_dir)
    assert resolve("useralgo:gather_sum") == "useralgo:gather_sum"
    before = len(ALGORITHMS)
    assert resolve("useralgo:gather_sum") == "useralgo:gather_sum"  # registered now: found by name
    assert len(ALGORITHMS) == before
    # a module that registers itself on import keeps its own name
    assert resolve("examples.custom_allreduce:allgather_reduce") == "allgather_reduce"
    with pytest.raises(ValueError, match="no cost function: define helper_cost"):
        (user_dir / "nocost.py").write_text("def helper(t, buf, op):\n    yield from ()\n")
        resolve("nocost:helper")
    with pytest.raises(ValueError, match="reduce_scatter: unknown algorithm 'useralgo:gather_sum'"):
        resolve("useralgo:gather_sum", collective="reduce_scatter")


def test_the_example_s_simulator_commands_run_as_documented(registry_restored):
    import examples.custom_allreduce as example

    commands = [line.split()[1:] for line in example.__doc__.splitlines() if "python -m collectives.sim" in line]
    assert [c[2] for c in commands] == ["check", "run", "sweep", "numerics"]
    for args in commands:
        proc = run_python(args, ROOT)
        assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
        assert "allgather_reduce" in proc.stdout
