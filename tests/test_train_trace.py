"""``python -m minidl.train --trace`` and ``--bucket-mb auto``: the files and lines they produce, and their mistakes."""

import json
import re
from collections import Counter

import pytest
from mpi_launch import run_mpi

from minidl.train import main


def _slices(path):
    doc = json.loads(path.read_text())
    slices = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert all({"name", "ts", "dur", "pid", "tid"} <= set(e) and e["dur"] >= 0 for e in slices)
    return doc, slices


@pytest.mark.mpi
def test_two_ranks_with_auto_buckets_and_a_trace(tmp_path):
    trace = tmp_path / "trace.json"
    args = ["-m", "minidl.train", "--epochs", "1", "--no-progress", "--link", "1Gbps,100us"]
    args += ["--bucket-mb", "auto", "--trace", str(trace), "--trace-steps", "5"]
    proc = run_mpi(2, args, timeout=240)
    chose = re.search(r"--bucket-mb auto chose ([0-9.e+-]+) MiB \((\d+) buckets?\); per step, predicted", proc.stdout)
    assert chose, proc.stdout
    assert re.search(r"measured \(median of \d+ steps\): allreduce [0-9.]+ ms, exposed [0-9.]+ ms", proc.stdout)
    doc, slices = _slices(trace)
    tracks = Counter((e["pid"], e["tid"]) for e in slices)
    assert set(tracks) == {(0, 0), (0, 1), (1, 0), (1, 1)}  # a main and a comm track per rank
    buckets = int(chose.group(2))
    assert len(doc["metadata"]["buckets"]) == buckets
    assert tracks[0, 1] == tracks[1, 1] == 5 * buckets  # every bucket of every traced step, on both ranks
    assert {e["args"]["step"] for e in slices} == {1, 2, 3, 4, 5}
    assert f"trace of 5 step(s) written to {trace}" in proc.stdout


def test_one_rank_trace_has_the_main_track_only_and_auto_says_why_it_keeps_25(tmp_path, capsys):
    trace = tmp_path / "t.json"
    argv = ["--epochs", "1", "--no-progress", "--trace", str(trace), "--bucket-mb", "auto", "--link", "1Gbps,1us"]
    main(argv)
    assert "--bucket-mb auto: one rank, nothing to communicate: 25 MiB buckets" in capsys.readouterr().out
    _, slices = _slices(trace)
    assert {(e["pid"], e["tid"]) for e in slices} == {(0, 0)}
    assert {e["name"] for e in slices} >= {"step 1", "forward", "backward", "optimizer"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bucket-mb", "auto"], "--bucket-mb auto predicts each bucket's allreduce on the link: give --link"),
        (["--bucket-mb", "big"], "argument --bucket-mb: expected MiB (such as 25 or 0.5) or 'auto', got 'big'"),
        (["--bucket-mb", "0"], "--bucket-mb must be a positive number, got 0.0"),
        (["--trace", "t.png"], "--trace t.png: the file name must end in .json"),
        (["--trace", "/proc/nope/t.json"], "--trace /proc/nope/t.json: cannot write it"),
        (["--trace-steps", "0"], "--trace-steps must be at least 1, got 0"),
    ],
)
def test_bad_options_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0], err
