"""``python -m collectives.bench`` under mpiexec: honest defaults, the #wrong exit, the JSON record, the collectives.

Only what the benchmark prints and returns is tested here, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess

from mpi_launch import ROOT
from user_algorithm_source import run_python, write_user_module

QUICK = ["-b", "8", "-e", "1K", "-f", "32", "-r", "1", "-n", "2", "-w", "1"]


def bench(args: list[str], nprocs: int, cwd=ROOT, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_python(["-m", "collectives.bench", *args], cwd, nprocs, timeout)


def test_a_broken_algorithm_makes_the_run_fail(tmp_path):
    write_user_module(tmp_path)
    proc = bench([*QUICK, "-a", "ring,useralgo:broken"], 2, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # 8 B = 2 floats; inputs (i + r) % 5: rank 0 keeps [0, 1], rank 1 keeps [1, 2], the sum is [1, 3]:
    # 2 wrong on rank 0, 1 on rank 1
    assert "# WRONG: useralgo:broken gave 3 wrong element(s) at 8 B" in proc.stdout
    assert "# Out of bounds values : " in proc.stdout and "FAILED" in proc.stdout
    assert "WRONG: ring" not in proc.stdout


def test_defaults_checks_columns_summary_and_json(tmp_path):
    out = tmp_path / "run.json"
    proc = bench([*QUICK, "--json", str(out)], 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any("library mismatch check on (the default)" in line for line in lines)
    header = next(line for line in lines if line.startswith("#") and "size" in line and "#wrong" in line)
    for column in ("MPI", "auto", "ring", "tree", "recursive_doubling", "rabenseifner", "naive", "#wrong"):
        assert f" {column} " in header + " "
    assert any("auto (pre-declared) vs MPI" in line for line in lines)
    assert any(line.startswith("# Avg bus bandwidth    : ") for line in lines)
    assert "# Out of bounds values : 0 OK" in lines
    data = json.loads(out.read_text())
    assert data["ranks"] == 2 and data["mismatch_check"] is True
    assert {"host", "cpu", "cores"} <= set(data["machine"]) and len(data["load_before"]) == 3
    assert {"python", "numpy", "mpi4py", "mpi", "collectives"} <= set(data["versions"])
    assert "-a" not in data["command"] and "--json" in data["command"]
    sizes = sorted({r["bytes"] for r in data["records"]})
    assert sizes == [8, 256]  # -b 8 -e 1K -f 32
    assert {r["algorithm"] for r in data["records"]} >= {"MPI", "auto", "ring", "naive"}
    assert all(r["wrong"] == 0 for r in data["records"])
    assert [s["choice"] for s in data["summary"]] == ["auto", "auto"]


def test_every_collective_at_three_ranks_is_right():
    proc = bench([*QUICK, "--collective", "all", "-o", "avg"], 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for title in ("allreduce, float, op avg", "reduce_scatter, float, op avg", "allgather, float, op none",
                  "broadcast, float, op none"):  # fmt: skip
        assert title in proc.stdout
    assert "# Out of bounds values : 0 OK" in proc.stdout
    # halving and doubling need a power of two: shown as not run, not as wrong
    assert "halving" in proc.stdout and "WRONG" not in proc.stdout


def test_option_mistakes_are_one_line():
    proc = bench(["-a", "nonesuch"], 1, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("python -m collectives.bench: error: argument -a/--choice")
    assert "Traceback" not in proc.stderr
    proc = bench(["--collective", "gather"], 1, timeout=60)
    assert proc.returncode == 2 and "unknown collective 'gather'" in proc.stderr


def test_benchmarks_md_tables_are_the_committed_runs():
    """BENCHMARKS.md's generated block is what the report makes of benchmarks/results/*.json."""
    from collectives.bench.report import BEGIN, END, load_runs, markdown

    runs = sorted(str(p) for p in (ROOT / "benchmarks" / "results").glob("*.json"))
    assert any("allreduce-p2" in r for r in runs) and any("allreduce-p4" in r for r in runs)
    doc = (ROOT / "BENCHMARKS.md").read_text()
    block = doc.split(BEGIN, 1)[1].split(END, 1)[0]
    relative = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "benchmarks" / "results").glob("*.json"))]
    assert block.strip() == markdown(load_runs([str(ROOT / r) for r in relative])).strip()


def test_report_updates_between_markers(tmp_path):
    from collectives.bench.report import main as report

    out = tmp_path / "run.json"
    assert bench([*QUICK, "-a", "ring", "--json", str(out)], 2).returncode == 0
    doc = tmp_path / "B.md"
    doc.write_text("# title\n<!-- bench:begin -->\nold\n<!-- bench:end -->\ntail\n")
    assert report([str(out), "--update", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# title\n<!-- bench:begin -->\n") and text.endswith("<!-- bench:end -->\ntail\n")
    assert "old" not in text and "**allreduce, float32, sum, p = 2** (pre-declared choice: `ring`" in text
    assert "| 8 B |" in text and "| 256 B |" in text


def test_fit_scores_out_of_sample_on_the_launch_left_out():
    from collectives import select
    from collectives.algorithms import ALGORITHMS
    from collectives.bench.fit import out_of_sample, out_of_sample_lines

    truth = select.MachineModel(5e-6, 1e-10, 2e-10)
    sizes = [8 << k for k in range(0, 22, 3)]

    def launch(scale: float) -> dict:
        records = [
            {"algorithm": name, "ranks": 2, "bytes": n, "type": "float32", "redop": "sum",
             "time_us": truth.predict(ALGORITHMS[name].cost(2, n, 4)) * 1e6 * scale}
            for name in ("ring", "recursive_doubling", "naive") for n in sizes
        ]  # fmt: skip
        return {"ranks": 2, "records": records}

    # two launches made by the same machine (one uniformly 10% slower): the model fitted on either
    # picks the other's fastest algorithm at every size
    scores = out_of_sample([launch(1.0), launch(1.1)])[2]
    assert scores["launches"] == 2 and scores["cases"] == 2 * len(sizes)
    assert scores["hits"] == scores["cases"] and scores["worst_lost"] == 1.0
    assert out_of_sample_lines([launch(1.0)])[0] == "p=2: one launch only, nothing to score out of sample"
