"""The trainer's --comm-hook: refused with one line when wrong, recorded in the run's config, announced on resume."""

import pytest

from minidl.checkpoint import CheckpointSeries
from minidl.train import main


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gzip", "--comm-hook: unknown hook 'gzip'; expected one of none, fp16, bf16, powersgd:rank=1,start_iter=0"),
        ("powersgd:rank=0", "--comm-hook powersgd:rank=0: PowerSGD: rank must be an integer >= 1, got 0"),
        ("powersgd:ranks=2", "--comm-hook powersgd:ranks=2: powersgd has no key 'ranks'; its keys: rank, start_iter"),
        ("topk:ratio=2", "--comm-hook topk:ratio=2: top-k: ratio must be a number in (0, 1], got 2.0"),
    ],
)
def test_a_bad_comm_hook_is_one_line_listing_what_is_valid(capsys, spec, message):
    with pytest.raises(SystemExit) as exit_:
        main(["--comm-hook", spec])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("python -m minidl.train: error: "), err
    assert message in err[0]


def test_the_hook_is_in_the_config_spelled_out_and_a_change_is_announced_on_resume(tmp_path, capsys):
    common = ["--checkpoint-dir", str(tmp_path), "--quiet", "--no-progress", "--train-size", "256"]
    common += ["--dataset", "blobs"]
    main([*common, "--epochs", "1", "--comm-hook", "powersgd:rank=2"])
    config = CheckpointSeries.config_of(CheckpointSeries.latest(tmp_path))
    assert config["comm_hook"] == "powersgd:rank=2,start_iter=0,min_rate=2.0,seed=0"
    capsys.readouterr()
    main([*common, "--epochs", "2", "--resume", "--comm-hook", "topk:ratio=0.5"])
    out = capsys.readouterr().out
    assert "--comm-hook powersgd:rank=2,start_iter=0,min_rate=2.0,seed=0 -> topk:ratio=0.5" in out, out
    assert "communicated with the new hook from the next step" in out


def test_a_hook_and_zero_stage_2_are_refused_together(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--comm-hook", "fp16", "--zero-stage", "2"])
    assert exit_.value.code == 2
    assert "--comm-hook fp16 with --zero-stage 2: stage 2 reduce-scatters the gradients" in capsys.readouterr().err
