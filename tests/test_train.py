"""The main job, ``python -m minidl.train``: accuracy, options, outputs, resume, and every way it can fail.

Each failure is provoked and checked for its message, its exit code and how fast the job ends
(launches have their own timeouts, see ``mpi_failure``; none relies on the suite's).
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mpi_failure
import numpy as np
import pytest
from mpi_launch import run_mpi

from minidl.checkpoint import CheckpointSeries, load
from minidl.train import TrainingError, main

DIGITS_TRAIN = 1438  # samples in the embedded digits training split


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


def test_metrics_csv_has_a_header_the_config_and_one_row_per_step(tmp_path):
    path = tmp_path / "m.csv"
    main(["--epochs", "1", "--quiet", "--metrics", str(path), "--batch-size", "128", "--lr", "0.07"])
    lines = path.read_text().splitlines()
    assert lines[0].startswith("kind,epoch,step,loss,lr")
    assert lines[1].startswith("config,") and '""lr"": 0.07' in lines[1]  # the run's configuration
    assert len(lines) == 2 + DIGITS_TRAIN // 128 + 1  # header, config, steps, one epoch row


def test_resume_continues_exactly_where_the_straight_run_goes(tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    # a constant schedule after warmup, so that the 2-epoch run is the first half of the 4-epoch one
    common = ["--quiet", "--schedule", "constant", "--warmup-epochs", "1", "--batch-size", "64"]
    main([*common, "--epochs", "4", "--checkpoint-dir", str(straight)])
    main([*common, "--epochs", "2", "--checkpoint-dir", str(resumed)])
    main([*common, "--epochs", "4", "--checkpoint-dir", str(resumed), "--resume"])
    a, b = load(CheckpointSeries.latest(straight)), load(CheckpointSeries.latest(resumed))
    assert a["epoch"] == b["epoch"] == 4 and a["step"] == b["step"] == 4 * (DIGITS_TRAIN // 64)
    assert len(CheckpointSeries.runs(resumed)) == 1  # the resumed run continued the same series
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
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--base-batch", "0"], "--base-batch must be at least 1, got 0"),
        (["--train-size", "0", "--dataset", "spirals"], "--train-size must be at least 1, got 0"),
        (["--batch-size", "-3"], "--batch-size must be at least 1, got -3"),
        (["--hidden", "0"], "--hidden widths must be at least 1, got 0"),
        (["--hidden", "a,b"], "--hidden must be comma-separated integers"),
        (["--baseline-throughput", "-5"], "--baseline-throughput must be a positive number, got -5.0"),
        (["--lr", "nan"], "--lr must be a positive number, got nan"),
        (["--lr", "inf"], "--lr must be a positive number, got inf"),
        (["--momentum", "-0.1"], "--momentum must be a number >= 0, got -0.1"),
        (["--depth", "9"], "--depth must be 6n+2 (8, 14, 20, ...), got 9"),
        (["--link", "fast"], "10Gbps,20us"),
        (["--algorithm", "nope"], "unknown algorithm 'nope'; expected one of ['auto', 'ring'"),
        (["--resume"], "--resume needs --checkpoint-dir"),
        (["--metrics", "m.txt"], "--metrics m.txt: the file name must end in .jsonl or .csv"),
        (["--profile", "step.txt"], "--profile step.txt: the file name must end in .png, .svg or .pdf"),
        (["--metrics", "/proc/nope/m.jsonl"], "--metrics /proc/nope/m.jsonl: cannot write it"),
        (["--model", "transformer"], "--model transformer does not fit this dataset, whose inputs are images"),
        (["--dataset", "mnist"], "--dataset mnist reads IDX files: pass --data-dir DIR"),
    ],
)
def test_bad_options_are_refused_with_one_line_each_before_any_work(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"python -m minidl.train: error: {err[0].split('error: ', 1)[1]}"]  # one line, no traceback
    assert message in err[0]


def test_checkpoint_dir_under_a_file_and_resume_without_checkpoint_are_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(SystemExit):
        main(["--checkpoint-dir", str(afile / "sub")])
    assert f"--checkpoint-dir {afile / 'sub'}: cannot write there (Not a directory)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--checkpoint-dir", str(tmp_path / "empty"), "--resume"])
    assert f"--resume: {tmp_path / 'empty'} holds no checkpoint" in capsys.readouterr().err


@pytest.mark.mpi
def test_every_mistake_is_one_line_printed_once_and_every_rank_exits_2(tmp_path):
    argv = ["-m", "minidl.train", "--base-batch", "0", "--lr", "nan", "--hidden", "0"]
    argv += ["--metrics", "/proc/nope/m.jsonl", "--checkpoint-dir", str(tmp_path)]
    ended = mpi_failure.run(argv, nprocs=2, timeout=60)
    assert ended.returncode == 2
    lines = mpi_failure.program_lines(ended.stderr)
    assert len(lines) == 4, ended.stderr  # four mistakes, printed by rank 0 only
    for text in ("--base-batch must be at least 1", "--lr must be", "--hidden widths", "--metrics /proc/nope"):
        assert sum(text in line for line in lines) == 1, ended.stderr
    assert ended.seconds < 30


@pytest.mark.mpi
def test_unwritable_metrics_path_ends_a_two_rank_job_at_once_with_one_line():
    ended = mpi_failure.run(["-m", "minidl.train", "--metrics", "/proc/nope/m.jsonl"], nprocs=2, timeout=60)
    assert ended.returncode != 0
    assert mpi_failure.program_lines(ended.stderr) == [
        "python -m minidl.train: error: --metrics /proc/nope/m.jsonl: cannot write it (No such file or directory)"
    ]
    assert ended.seconds < 30


@pytest.mark.mpi
def test_nonfinite_gradients_stop_every_rank_at_one_step_naming_the_parameter(tmp_path):
    # lr 1e30 makes the first update overflow the logits; the next step's gradients are NaN
    argv = ["-m", "minidl.train", "--lr", "1e30", "--epochs", "2", "--no-progress", "--checkpoint-dir", str(tmp_path)]
    ended = mpi_failure.run(argv, nprocs=2, timeout=90)
    assert ended.returncode == 1
    errors = [line for line in ended.stderr.splitlines() if line.startswith("python -m minidl.train: error:")]
    assert len(errors) == 1, ended.stderr
    assert re.search(
        r"step \d+ \(epoch 1\): the gradients hold NaN or Inf \(first: parameter 'layers.0.weight'\)", errors[0]
    )
    assert "--skip-nonfinite" in errors[0]
    assert "Traceback" not in ended.stderr
    assert list(tmp_path.iterdir()) == []  # stopped in epoch 1: nothing written
    assert ended.seconds < 60


def test_skip_nonfinite_skips_and_counts_the_steps():
    summary = main(["--lr", "1e30", "--epochs", "1", "--quiet", "--skip-nonfinite", "--batch-size", "128"])
    steps = DIGITS_TRAIN // 128
    assert 1 <= summary["skipped_steps"] < steps  # the first step is finite; it ruins the model


def test_a_nonfinite_model_is_never_checkpointed_over_a_good_one(tmp_path):
    from minidl import nn
    from minidl.train import Printer, _checkpoint

    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    series = CheckpointSeries(tmp_path, "run-x", keep=3)
    say = Printer(0, quiet=True)
    _checkpoint(series, model, None, 1, 10, {}, say)
    good = (tmp_path / "run-x.epoch-0001.npz").read_bytes()
    model[1].bias.data[1] = np.inf
    with pytest.raises(TrainingError, match=r"epoch 2: parameter '1.bias' holds NaN or Inf; no checkpoint written"):
        _checkpoint(series, model, None, 2, 20, {}, say)
    assert [p.name for p in tmp_path.iterdir()] == ["run-x.epoch-0001.npz"]
    assert (tmp_path / "run-x.epoch-0001.npz").read_bytes() == good


def test_checkpoints_keep_k_and_a_new_run_writes_next_to_the_old_one(tmp_path, capsys):
    common = ["--quiet", "--batch-size", "256", "--checkpoint-dir", str(tmp_path)]
    main([*common, "--epochs", "4", "--keep-checkpoints", "2"])
    (first,) = CheckpointSeries.runs(tmp_path)
    assert [e for e, _ in CheckpointSeries.runs(tmp_path)[first]] == [3, 4]
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    main([*common, "--epochs", "1"])
    runs = CheckpointSeries.runs(tmp_path)
    assert len(runs) == 2 and all(tmp_path.joinpath(n).read_bytes() == b for n, b in kept.items())
    main([*common, "--epochs", "1", "--overwrite"])
    assert len(CheckpointSeries.runs(tmp_path)) == 1 and not any(tmp_path.joinpath(n).exists() for n in kept)


def test_resume_refuses_another_model_or_optimizer_and_shows_the_difference(tmp_path, capsys):
    common = ["--quiet", "--batch-size", "256", "--checkpoint-dir", str(tmp_path)]
    main([*common, "--epochs", "1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*common, "--epochs", "2", "--resume", "--optimizer", "adam", "--hidden", "64"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "the checkpoint's run has --hidden 128, this run asks for 64; the model cannot change" in err[0]
    assert "has --optimizer sgd, this run asks for adam; the optimizer's state cannot change" in err[1]


def test_resume_applies_and_announces_a_new_lr_and_appends_to_the_metrics(tmp_path, capsys):
    metrics = tmp_path / "m.jsonl"
    common = ["--batch-size", "256", "--checkpoint-dir", str(tmp_path / "ck"), "--metrics", str(metrics)]
    main([*common, "--epochs", "2", "--quiet"])
    main([*common, "--epochs", "3", "--resume", "--lr", "0.5", "--no-progress"])
    out = capsys.readouterr().out
    assert "changed since the checkpoint: --lr 0.05 -> 0.5, --epochs 2 -> 3" in out
    assert "learning rate 0.05 -> 0.5" in out
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["kind"] for r in rows].count("config") == 1  # the original run's, kept
    steps = [r for r in rows if r["kind"] == "step"]
    per_epoch = DIGITS_TRAIN // 256
    assert [r["step"] for r in steps] == list(range(1, 3 * per_epoch + 1))  # nothing lost, nothing repeated
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2, 3]
    assert {r["lr"] for r in steps if r["epoch"] == 3} == {0.5} and {r["lr"] for r in steps if r["epoch"] < 3} == {0.05}


@pytest.mark.mpi
def test_resume_on_another_number_of_ranks_announces_the_global_batch_and_lr(tmp_path):
    common = ["-m", "minidl.train", "--batch-size", "128", "--base-batch", "128", "--no-progress"]
    common += ["--checkpoint-dir", str(tmp_path)]
    run_mpi(1, [*common, "--epochs", "1", "--quiet"], timeout=120)
    proc = run_mpi(2, [*common, "--epochs", "2", "--resume"], timeout=120)
    assert "changed since the checkpoint: ranks 1 -> 2, --epochs 1 -> 2" in proc.stdout
    assert "global batch 128 -> 256" in proc.stdout
    assert "learning rate 0.05 -> 0.1" in proc.stdout  # 0.05 x 256 / 128
    assert "the data order (each rank's shard and batches) is no longer the uninterrupted run's" in proc.stdout


def test_profile_step_past_the_end_profiles_the_last_step_and_says_so(tmp_path, capsys):
    profile = tmp_path / "step.svg"
    main(["--epochs", "1", "--batch-size", "128", "--no-progress", "--profile", str(profile), "--profile-step", "500"])
    out = capsys.readouterr().out
    last = DIGITS_TRAIN // 128
    assert f"--profile-step 500 is past this run's last step ({last}): profiling step {last}" in out
    assert f"timeline of step {last} written to" in out and profile.stat().st_size > 1000


@contextlib.contextmanager
def _running(args: list[str], until: Path, epoch: int):
    """A 2-rank job running ``python *args``, once checkpoint ``epoch`` is in ``until``; killed (its
    whole process group) if still running at the end."""
    cmd = [*mpi_failure.launch_command(2), sys.executable, *args]
    job = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=mpi_failure.ROOT,
        env=mpi_failure.env(), start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not list(until.glob(f"*.epoch-{epoch:04d}.npz")):
            assert job.poll() is None and time.monotonic() < deadline, f"the run ended before checkpoint {epoch}"
            time.sleep(0.02)
        yield job
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()


@pytest.mark.mpi
def test_an_error_on_one_rank_ends_the_job_in_seconds_with_its_traceback_once(tmp_path):
    ckpt = tmp_path / "ck"
    args = ["-m", "minidl.train", "--epochs", "8", "--batch-size", "16", "--quiet", "--link", "1Gbps,1ms"]
    with _running([*args, "--checkpoint-dir", str(ckpt)], until=ckpt, epoch=1) as job:
        shutil.rmtree(ckpt)
        ckpt.write_text("now a file")  # rank 0's next checkpoint fails; rank 1 goes on to the next collective
        broken_at = time.monotonic()
        _, err = job.communicate(timeout=60)
        ended_after = time.monotonic() - broken_at
    assert job.returncode != 0
    assert err.count("ending the whole job (MPI_Abort)") == 1, err
    assert "collectives: rank 0 of 2 failed" in err and re.search(r"(FileExistsError|NotADirectoryError)", err), err
    assert ended_after < 30, ended_after


def _rank_pids(marker: str) -> list[int]:
    """Pids of the ranks (python processes) whose command line holds ``marker``; started by this test."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv[0] == sys.executable and "minidl.train" in argv and marker in argv:
                pids.append(int(entry))
    return pids


@pytest.mark.mpi
def test_a_rank_killed_mid_training_ends_the_job_and_the_resumed_run_is_bit_identical(tmp_path):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    # an emulated link slows each step to a few ms, so the run is still going when the test kills a rank
    common = ["-m", "minidl.train", "--epochs", "8", "--batch-size", "16", "--quiet", "--link", "1Gbps,1ms"]
    run_mpi(2, [*common, "--checkpoint-dir", straight], timeout=240)

    with _running([*common, "--checkpoint-dir", killed], until=tmp_path / "killed", epoch=2) as job:
        ranks = _rank_pids(killed)
        assert len(ranks) == 2, ranks
        victim = ranks[-1]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        out, err = job.communicate(timeout=60)
        ended_after = time.monotonic() - killed_at
    assert job.returncode != 0
    # The launcher names a rank that died of signal 9 (MPICH on stdout, Open MPI on stderr). Hydra kills the
    # survivor with SIGKILL too and may name whichever exit it saw first, so either rank's pid will do.
    said = out + err
    assert any(f"PID {pid}" in said for pid in ranks), said
    assert "Killed (signal 9)" in said or "signal 9 (Killed)" in said, said
    assert ended_after < 30, ended_after
    epochs = [e for e, _ in next(iter(CheckpointSeries.runs(killed).values()))]
    assert 8 not in epochs, "killed after the end: the test proves nothing"

    run_mpi(2, [*common, "--checkpoint-dir", killed, "--resume"], timeout=240)
    a, b = load(CheckpointSeries.latest(straight)), load(CheckpointSeries.latest(killed))
    assert a["epoch"] == b["epoch"] == 8 and a["step"] == b["step"]
    for part in ("model", "optimizer"):
        flat_a, flat_b = _arrays(a[part]), _arrays(b[part])
        assert flat_a.keys() == flat_b.keys() and flat_a
        for key in flat_a:
            np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=f"{part}/{key}")


def _arrays(tree, prefix=""):
    """Every array in a nested checkpoint tree, by path."""
    if isinstance(tree, np.ndarray):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    found = {}
    for key, value in items:
        found.update(_arrays(value, f"{prefix}/{key}"))
    return found


def test_resume_announces_a_sync_bn_change_and_ignores_flags_the_checkpoint_predates():
    from minidl.train_options import resume_changes

    saved = {"lr": 0.1, "sync_bn": False, "global_batch": 64, "scaled_lr": 0.1}
    lines = resume_changes(saved, {**saved, "sync_bn": True})
    assert lines == [
        "changed since the checkpoint: --sync-bn False -> True",
        "batch-norm statistics are now computed across all ranks (SyncBatchNorm); the running statistics carry over",
    ]
    older = {k: v for k, v in saved.items() if k != "sync_bn"}  # a checkpoint written before --sync-bn existed
    assert resume_changes(older, {**saved, "sync_bn": False}) == []
