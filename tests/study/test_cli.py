"""python -m minidl.study end to end: the --quick study, resume, interruption, plan, compare, bad input."""

import csv
import json

import pytest

from minidl.metrics import MetricsWriter
from minidl.study import batch_scaling
from minidl.study.__main__ import main

TINY = ["--batches", "16,64", "--lrs", "1", "--seeds", "1", "--epochs", "1", "--min-steps", "15", "--recipes", "sgd"]
TINY += ["--no-sharpness", "--no-progress"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "study"
    assert main(["batch-scaling", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_quick_study_writes_every_output(quick, capsys):
    rows = list(csv.DictReader((quick / "results.csv").open()))
    assert len(rows) == 3 * 2 * 2  # batches x recipes x learning rates, one seed
    assert {r["recipe"] for r in rows} == {"sgd", "momentum"}
    assert {int(r["batch"]) for r in rows} == {16, 64, 256}
    for r in rows:
        assert r["reached"] in ("True", "False")
        assert (r["steps_to_target"] == "") == (r["reached"] == "False")  # not reached: kept, empty
        gap = float(r["final_train_accuracy"]) - float(r["final_test_accuracy"])
        assert float(r["generalization_gap"]) == pytest.approx(gap)
    data = json.loads((quick / "results.json").read_text())
    assert len(data["runs"]) == len(rows) and 0 < data["target"] < 1
    report = (quick / "report.md").read_text()
    assert "## Findings" in report and "critical batch" in report and "same update as p data-parallel" in report
    for png in ("steps_vs_batch.png", "accuracy_vs_batch.png", "sharpness_vs_batch.png", "generalization_gap.png"):
        assert (quick / png).read_bytes()[:4] == b"\x89PNG"


def test_resume_skips_finished_runs(quick, capsys):
    assert main(["batch-scaling", "--quick", "--no-progress", "--resume", "--out", str(quick)]) == 0
    assert "0 run(s) now, 12 kept" in capsys.readouterr().out


def test_interrupted_study_keeps_finished_runs_and_resume_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    real, calls = batch_scaling.train_run, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_scaling, "train_run", flaky)
    assert main(["batch-scaling", *TINY, "--out", str(out)]) == 130
    assert len((out / "runs.jsonl").read_text().splitlines()) == 1
    assert "1 finished run(s) kept" in capsys.readouterr().out
    monkeypatch.setattr(batch_scaling, "train_run", real)
    assert main(["batch-scaling", *TINY, "--resume", "--out", str(out)]) == 0
    assert "1 run(s) now, 1 kept" in capsys.readouterr().out


def one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last
    for needle in needles:
        assert needle in last
    return last


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    one_line_error(capsys, ["batch-scaling", "--recipes", "sgd,adamw", "--out", str(tmp_path / "a")], "adamw")
    one_line_error(capsys, ["batch-scaling", "--batches", "8,4096", "--out", str(tmp_path / "b")], "4096", "1438")
    with pytest.raises(SystemExit) as e:
        main(["batch-scaling", "--dataset", "imagenet"])
    assert e.value.code == 2
    one_line_error(capsys, ["plan", "--study", str(tmp_path)], "not a batch-scaling results directory")


def test_unreachable_target_is_reported_and_the_runs_kept(tmp_path, capsys):
    out = tmp_path / "s"
    one_line_error(capsys, ["batch-scaling", *TINY, "--target", "0.999", "--out", str(out)], "never reached", "0.999")
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 and all(r["reached"] == "False" for r in rows)
    # rerunning into the same directory without --resume would mix studies: refused
    one_line_error(capsys, ["batch-scaling", *TINY, "--out", str(out)], "--resume")


def test_corrupt_results_are_named(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["batch-scaling", *TINY, "--out", str(out)]) == 0
    one_line_error(capsys, ["batch-scaling", *TINY, "--hidden", "64", "--resume", "--out", str(out)], "hidden")
    lines = (out / "runs.jsonl").read_text().splitlines()
    (out / "runs.jsonl").write_text("{not json\n" + "\n".join(lines) + "\n")
    one_line_error(capsys, ["plan", "--study", str(out)], "runs.jsonl line 1 is corrupt")
    (out / "runs.jsonl").write_text("")
    one_line_error(capsys, ["plan", "--study", str(out)], "no finished runs")


def test_plan_from_a_study(quick, tmp_path, capsys):
    argv = ["plan", "--study", str(quick), "--workers", "1..64", "--algorithms", "ring,rabenseifner"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "fitted to the batch-scaling study" in text and "best:" in text and "why:" in text
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert len(plan["predictions"]) == 7 * 2
    one = [x for x in plan["predictions"] if x["workers"] == 1]
    assert one[0]["comm"] == 0 and one[0]["time_to_target"] == pytest.approx(one[0]["steps"] * one[0]["step_time"])
    assert (tmp_path / "plan.png").read_bytes()[:4] == b"\x89PNG"


def test_plan_without_a_study_uses_the_noise_scale(capsys):
    assert main(["plan", "--target", "0.85", "--workers", "1,4", "--algorithms", "ring"]) == 0
    assert "noise-scale model alone" in capsys.readouterr().out
    one_line_error(capsys, ["plan", "--workers", "1,4", "--algorithms", "bogus"], "bogus")


def write_run(path, lr, accs, elapsed):
    with MetricsWriter(path, config={"lr": lr, "batch_size": 32, "metrics": str(path)}) as w:
        for e, (acc, t) in enumerate(zip(accs, elapsed), 1):
            w.write({"kind": "step", "epoch": e, "step": e, "loss": 1.0 / e, "samples": 64, "total": 0.5})
            w.write({"kind": "epoch", "epoch": e, "step": e, "test_accuracy": acc, "elapsed": t})


def test_compare_labels_by_what_differs_and_summarises(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.csv"
    write_run(a, 0.1, [0.5, 0.8, 0.9], [1.0, 2.0, 3.0])
    write_run(b, 0.4, [0.7, 0.92, 0.95], [1.5, 2.5, 3.5])
    assert main(["compare", str(a), str(b), "--target", "0.9", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "lr=0.1" in out and "lr=0.4" in out and "batch_size" not in out
    summary = {r["run"]: r for r in json.loads((tmp_path / "c" / "summary.json").read_text())["runs"]}
    assert summary["lr=0.1"]["epochs_to_target"] == 3 and summary["lr=0.1"]["seconds_to_target"] == 3.0
    assert summary["lr=0.4"]["epochs_to_target"] == 2 and summary["lr=0.4"]["seconds_to_target"] == 2.5
    assert summary["lr=0.4"]["samples_per_second"] == pytest.approx(64 / 0.5)
    assert (tmp_path / "c" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "bad.jsonl").write_text('{"kind": "step"}\n{oops\n')
    one_line_error(capsys, ["compare", str(tmp_path / "bad.jsonl")], "bad.jsonl line 2")
    one_line_error(capsys, ["compare", str(tmp_path / "missing.jsonl")], "does not exist")


def test_metrics_config_comes_first_in_both_formats(tmp_path):
    for name in ("m.jsonl", "m.csv"):
        path = tmp_path / name
        with MetricsWriter(path, config={"hidden": (64, 32), "lr": 0.1}) as w:
            w.write({"kind": "step", "step": 1, "loss": 2.0})
        text = path.read_text().splitlines()
        if name.endswith(".jsonl"):
            first = json.loads(text[0])
            assert first == {"kind": "config", "config": {"hidden": [64, 32], "lr": 0.1}}
            assert json.loads(text[1])["elapsed"] >= 0
        else:
            rows = list(csv.DictReader(path.open()))
            assert rows[0]["kind"] == "config" and json.loads(rows[0]["config"])["hidden"] == [64, 32]
            assert rows[1]["loss"] == "2.0" and float(rows[1]["elapsed"]) >= 0


@pytest.mark.mpi
def test_validate_runs_the_trainer_and_tabulates_predicted_vs_measured(quick, tmp_path, capsys):
    argv = ["validate", "--study", str(quick), "--ranks", "1,2", "--no-calibrate", "--epochs", "2"]
    assert main([*argv, "--per-worker-batch", "64", "--timeout", "200", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "step ms pred" in text and "to target s pred" in text
    rows = json.loads((tmp_path / "validation.json").read_text())["rows"]
    assert [r["ranks"] for r in rows] == [1, 2] and [r["global_batch"] for r in rows] == [64, 128]
    for r in rows:
        assert r["measured_step"] > 0 and r["predicted_step"] > 0
        assert (tmp_path / f"p{r['ranks']}.jsonl").exists()
    assert rows[0]["predicted_exposed_comm"] == 0 and rows[1]["predicted_exposed_comm"] > 0
