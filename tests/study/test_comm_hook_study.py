"""batch-scaling --comm-hook: virtual ranks reduce as real ones would, and the study reports what a hook buys."""

import json

import numpy as np
import pytest

from minidl.distributed import make_comm_hook
from minidl.distributed.local_group import reduce_with_hook
from minidl.study.__main__ import main

TINY = ["--batches", "16,64", "--lrs", "1", "--seeds", "1", "--epochs", "1", "--min-steps", "15", "--recipes", "sgd"]
TINY += ["--no-sharpness", "--no-progress"]
SHAPES = [(6, 4), (4,), (3, 7), (2, 3, 2, 2)]
N = sum(int(np.prod(s)) for s in SHAPES)


@pytest.mark.parametrize("p", [1, 2, 3, 4])
@pytest.mark.parametrize("spec", ["powersgd:rank=8,min_rate=0", "topk:ratio=1"])
def test_virtual_ranks_with_a_lossless_setting_give_the_exact_average_on_every_rank(spec, p):
    grads = np.random.default_rng(p).standard_normal((p, N))
    hook = make_comm_hook(spec)[1]
    buffers = [g.copy() for g in grads]
    result, wire = reduce_with_hook(hook, [make_comm_hook(spec)[0] for _ in range(p)], buffers, SHAPES, 0)
    np.testing.assert_allclose(result, grads.mean(axis=0), rtol=1e-12, atol=1e-14)
    assert all(np.array_equal(b, buffers[0]) for b in buffers)
    # top-k: N values + N int32 indices; PowerSGD: the bias whole, P = n x min(8,n,m) and Q = m x min(8,n,m)
    mats = [(6, 4), (3, 7), (2, 12)]
    expected = N * 12 if spec.startswith("topk") else 8 * (4 + sum((n + m) * min(8, n, m) for n, m in mats))
    assert wire == expected


def test_a_failing_hook_on_one_virtual_rank_raises_instead_of_hanging():
    def hook(state, bucket):
        if bucket.comm.Get_rank() == 1:
            raise RuntimeError("rank 1 broke")
        bucket.all_reduce(bucket.buffer)

    with pytest.raises(RuntimeError, match="rank 1 broke"):
        reduce_with_hook(hook, [None] * 3, [np.zeros(4) for _ in range(3)], [(4,)], 0)


def test_the_study_compares_hooks_by_bytes_and_steps(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["batch-scaling", *TINY, "--out", str(out), "--comm-hook", "powersgd:rank=2", "--comm-hook", "topk:ratio=1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "communication hooks at B=16 (4 ranks)" in printed
    rows = {row["comm_hook"]: row for row in json.loads((out / "hooks.json").read_text())["rows"]}
    # the digits MLP 64 -> 128 -> 10 in float32: 9610 parameters; PowerSGD rank 2: biases + P and Q of both weights
    assert rows["none"]["wire_bytes_per_step"] == 4 * 9610
    assert rows["powersgd:rank=2,start_iter=0,min_rate=2.0,seed=0"]["wire_bytes_per_step"] == 4 * (
        138 + 2 * (128 + 64) + 2 * (10 + 128)
    )
    # top-k with k = all is the exact average: the same training as the plain runs, to rounding
    exact = rows["topk:ratio=1.0"]
    assert exact["wire_bytes_per_step"] == 9610 * 8
    assert abs(exact["final_accuracy"] - rows["none"]["final_accuracy"]) <= 0.01
    assert "## Communication hooks" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--comm-hook", "gzip"], "unknown hook 'gzip'"),
        (["--link", "1Gbps,50us"], "--link times the --comm-hook runs"),
        (["--comm-hook", "fp16", "--hook-ranks", "3"], "--hook-ranks 3 must be at least 1 and divide every batch"),
    ],
)
def test_bad_hook_options_are_one_line(tmp_path, capsys, extra, needle):
    assert main(["batch-scaling", *TINY, "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and needle in err.strip().splitlines()[-1], err
