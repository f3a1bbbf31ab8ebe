"""``python -m collectives.sim``: every subcommand, in process where possible; calibrate/validate under mpiexec."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mpi_launch import ROOT, launch_env

from collectives.link import format_time
from collectives.sim.__main__ import main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("check", "run", "sweep", "calibrate", "validate", "presets"):
        assert command in out


def test_run_prints_time_bandwidths_counters_and_writes_a_timeline(tmp_path, capsys):
    png = tmp_path / "ring.png"
    assert main(["run", "ring", "--ranks", "8", "--size", "1M", "--timeline", str(png), "--per-rank"]) == 0
    out = capsys.readouterr().out
    assert "msgs out" in out and len([line for line in out.splitlines() if line.strip().startswith("7 ")]) == 1
    assert "ring: predicted" in out and "algbw" in out and "busbw" in out
    assert "busiest rank: 14 messages (declared 14)" in out
    assert png.exists() and png.stat().st_size > 10_000


def test_run_all_on_a_topology_and_the_svg_summary_for_many_ranks(tmp_path, capsys):
    svg = tmp_path / "tree.svg"
    assert (
        main(["run", "tree", "--ranks", "64", "--size", "64K", "--topology", "torus:8x8", "--timeline", str(svg)]) == 0
    )
    assert "showing 16 of 64 ranks" in svg.read_text()
    assert main(["run", "all", "--ranks", "16", "--size", "1M", "--topology", "fattree:k=4,oversub=2"]) == 0
    out = capsys.readouterr().out
    assert "4-ary fat tree" in out and "rabenseifner" in out and "closed form" in out


def test_run_formula_reaches_a_million_ranks(capsys):
    assert main(["run", "ring,tree", "--ranks", "1048576", "--size", "1G", "--method", "formula"]) == 0
    assert "ring" in capsys.readouterr().out


def test_sweep_prints_winners_crossovers_reasons_and_plots(tmp_path, capsys):
    png = tmp_path / "map.png"
    args = ["sweep", "--ranks", "2..64", "--sizes", "1K..16M:x16", "--topology", "switch", "--plot", str(png)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "winner per (size, ranks)" in out and "crossovers" in out and "wins in" in out
    assert png.exists()


def test_check_quick_passes_and_fails_with_status(capsys):
    assert main(["check", "recursive_doubling", "--quick"]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_presets_and_bad_input(capsys):
    assert main(["presets"]) == 0
    assert "ib-ndr" in capsys.readouterr().out
    assert main(["run", "ring", "--ranks", "4", "--size", "1M", "--link", "ib-999"]) == 2
    err = capsys.readouterr().err
    assert "cannot read the link 'ib-999'" in err and "10Gbps,20us" in err and "'ib-edr'" in err
    assert main(["run", "nosuch", "--ranks", "4", "--size", "1M"]) == 2
    err = capsys.readouterr().err
    assert "unknown algorithm 'nosuch'" in err and "'rabenseifner'" in err and "'auto'" not in err


def test_run_link_spec_means_what_the_python_api_means(capsys):
    # --link 10Gbps,20us: every message takes 20 us + bytes / 1.25 GB/s end to end, as emulation stretches it.
    # naive on 2 ranks sends one message each way in sequence (reduce to 0, then send back); device cpu adds gamma.
    from collectives.sim import simulate

    assert main(["run", "naive", "--ranks", "2", "--size", "1M", "--link", "10Gbps,20us"]) == 0
    out = capsys.readouterr().out
    api = simulate("naive", 2, 1 << 20, link="10Gbps,20us")
    assert f"predicted {format_time(api.time)}" in out
    by_hand = 2 * (20e-6 + (1 << 20) / 1.25e9) + (1 << 20) / 4e9  # two messages plus one cpu reduction
    assert api.time == pytest.approx(by_hand, rel=1e-9)
    preset = simulate("naive", 2, 1 << 20, link="ib-hdr")
    assert main(["run", "naive", "--ranks", "2", "--size", "1M", "--link", "ib-hdr"]) == 0
    assert f"predicted {format_time(preset.time)}" in capsys.readouterr().out


def test_simulate_defaults_to_the_command_lines_machine(capsys):
    from collectives.sim import simulate

    assert main(["run", "ring", "--ranks", "4", "--size", "1M"]) == 0
    out = capsys.readouterr().out
    assert "ib-edr + cpu" in out
    assert f"predicted {format_time(simulate('ring', 4, 1 << 20).time)}" in out
    assert simulate("ring", 4, 1 << 20).time == simulate("ring", 4, 1 << 20, link="ib-edr").time > 0


def test_example_registers_its_algorithm_and_passes_the_harness():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_allreduce.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check allgather_reduce" in proc.stdout and "all checks passed" in proc.stdout


@pytest.mark.mpi
def test_calibrate_then_validate_under_mpiexec(tmp_path):
    profile = tmp_path / "profile.json"
    # the environment as mpi_launch gives it (HOME and, for Open MPI, its variables), the venv's mpiexec first
    env = {**launch_env(), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    run = [sys.executable, "-m", "collectives.sim"]
    cal = subprocess.run(
        [*run, "calibrate", "--nprocs", "2", "--quick", "--out", str(profile)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
    )
    assert cal.returncode == 0, cal.stdout + cal.stderr
    data = json.loads(profile.read_text())
    assert set(data["by_ranks"]) == {"2"} and data["model"]["alpha"] > 0 and data["model"]["beta"] > 0
    val = subprocess.run(
        [*run, "validate", "--profile", str(profile), "--nprocs", "2", "--algorithms", "ring,naive"]
        + ["--sizes", "4K,1M", "--repeats", "2", "--target", "100", "--json", str(tmp_path / "v.json")],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
    )
    assert val.returncode == 0, val.stdout + val.stderr
    report = json.loads((tmp_path / "v.json").read_text())
    assert len(report["rows"]) == 4 and set(report["median_abs_error"]) == {"ring", "naive"}
    assert "median absolute error per algorithm" in val.stdout
    # every calibration launch kept, and the validation launch's mode probed and matched to them
    assert len(data["launch_models"]["2"]) == data["rounds"] == 2 and len(data["placement"]["2"]) == 2
    mode = report["modes"]["2"]
    assert len(mode["probe_s"]) == 2 and mode["launches_used"] and set(mode["launches_used"]) <= {1, 2}
    assert set(report["median_abs_error_mode"]) == {"ring", "naive"} and "used launch(es)" in val.stdout
