"""The main job, ``python -m minidl.train``: accuracy, options, outputs, resume."""

import json
import re

import numpy as np
import pytest
from mpi_launch import run_mpi

from minidl.checkpoint import load
from minidl.train import main


def test_single_process_training_reaches_95_percent():
    summary = main(["--epochs", "10", "--quiet"])
    assert summary["ranks"] == 1
    assert summary["test_accuracy"] >= 0.95


@pytest.mark.mpi
def test_four_rank_training_reaches_95_percent():
    proc = run_mpi(4, ["-m", "minidl.train", "--no-progress"], timeout=240)
    match = re.search(r"done: test accuracy ([0-9.]+)", proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) >= 0.95, proc.stdout
    for column in ("samples/s", "comm s", "exposed s", "B_simple"):
        assert column in proc.stdout
    assert "hidden behind backward" in proc.stdout


@pytest.mark.mpi
def test_two_ranks_with_accumulation_emulated_link_metrics_and_profile(tmp_path):
    metrics, profile = tmp_path / "m.jsonl", tmp_path / "step.png"
    args = ["-m", "minidl.train", "--epochs", "2", "--accumulation", "2", "--batch-size", "16", "--no-progress"]
    args += ["--link", "10Gbps,20us", "--metrics", str(metrics), "--profile", str(profile), "--profile-step", "3"]
    proc = run_mpi(2, args, timeout=240)
    assert "global batch 64 = 16 x 2 ranks x 2" in proc.stdout
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 2 and len(steps) == 2 * (1438 // 2 // 16 // 2)
    assert all(r["comm"] > 0 and r["samples"] == 64 for r in steps)
    assert steps[-1]["b_simple"] is not None  # two ranks give two batch sizes: the noise scale is measured
    assert profile.stat().st_size > 1000 and profile.read_bytes()[:4] == b"\x89PNG"


def test_metrics_csv_has_a_header_and_one_row_per_step(tmp_path):
    path = tmp_path / "m.csv"
    main(["--epochs", "1", "--quiet", "--metrics", str(path), "--batch-size", "128"])
    lines = path.read_text().splitlines()
    assert lines[0].startswith("kind,epoch,step,loss,lr")
    assert len(lines) == 1 + 1438 // 128 + 1  # header, steps, one epoch row


def test_resume_continues_exactly_where_the_straight_run_goes(tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    # a constant schedule after warmup, so that the 2-epoch run is the first half of the 4-epoch one
    common = ["--quiet", "--schedule", "constant", "--warmup-epochs", "1", "--batch-size", "64"]
    main([*common, "--epochs", "4", "--checkpoint-dir", str(straight)])
    main([*common, "--epochs", "2", "--checkpoint-dir", str(resumed)])
    main([*common, "--epochs", "4", "--checkpoint-dir", str(resumed), "--resume"])
    a, b = load(straight / "last.npz"), load(resumed / "last.npz")
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"]
    for name in a["model"]:
        np.testing.assert_array_equal(a["model"][name], b["model"][name])


@pytest.mark.parametrize(
    "model, dataset, extra, floor",
    [
        ("lenet", "digits", ["--epochs", "3", "--optimizer", "adam", "--lr", "3e-3"], 0.75),
        (
            "transformer",
            "sequences",
            ["--epochs", "4", "--train-size", "1500", "--optimizer", "adam", "--lr", "3e-3"],
            0.5,
        ),
        ("mlp", "spirals", ["--epochs", "10", "--hidden", "64,64", "--lr", "0.1"], 0.8),
    ],
)
def test_model_zoo_trains(model, dataset, extra, floor):
    summary = main(["--model", model, "--dataset", dataset, "--quiet", "--no-progress", *extra])
    assert summary["test_accuracy"] >= floor, summary


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for option in ("--epochs", "--batch-size", "--lr", "--seed", "--algorithm", "--link", "--profile", "--resume"):
        assert option in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--link", "fast"], "10Gbps,20us"),
        (["--resume"], "--resume needs --checkpoint-dir"),
        (["--hidden", "a,b"], "--hidden must be comma-separated integers"),
    ],
)
def test_bad_options_are_rejected_with_a_reason(capsys, argv, message):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_model_that_does_not_fit_the_data_is_a_clear_error():
    with pytest.raises(ValueError, match="does not fit this dataset"):
        main(["--model", "transformer", "--dataset", "digits", "--quiet"])
