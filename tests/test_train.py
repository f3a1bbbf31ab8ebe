"""The main job: data-parallel training on the embedded digits reaches a good accuracy."""

import re

import pytest
from mpi_launch import run_mpi

from minidl.train import main


def test_single_process_training_reaches_95_percent():
    summary = main(["--epochs", "10", "--quiet"])
    assert summary["ranks"] == 1
    assert summary["test_accuracy"] >= 0.95


@pytest.mark.mpi
def test_four_rank_training_reaches_95_percent():
    proc = run_mpi(4, ["-m", "minidl.train"], timeout=240)
    match = re.search(r"done: test accuracy ([0-9.]+)", proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) >= 0.95, proc.stdout
    assert "samples/s" in proc.stdout and "allreduce" in proc.stdout


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for option in ("--epochs", "--batch-size", "--lr", "--seed", "--algorithm"):
        assert option in out


def test_bad_option_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["--epochs", "0"])
    assert "--epochs must be at least 1" in capsys.readouterr().err
