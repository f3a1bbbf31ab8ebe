"""The trainer's node options: --ranks-per-node (hierarchical allreduce) and --uneven (unpadded shards, join)."""

import numpy as np
import pytest
from mpi_launch import run_mpi

from minidl.train import UnpaddedShard, main


@pytest.mark.parametrize("n, ranks", [(10, 3), (9, 3), (2, 4), (1438, 3), (0, 2)])
def test_unpadded_shards_hold_every_sample_exactly_once(n, ranks):
    shards = [UnpaddedShard(n, num_replicas=ranks, rank=r, shuffle=True, seed=1) for r in range(ranks)]
    for s in shards:
        s.set_epoch(3)
    together = np.concatenate([s.indices() for s in shards])
    assert sorted(together.tolist()) == list(range(n))
    assert [len(s) for s in shards] == [len(s.indices()) for s in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.mpi
def test_uneven_shards_with_a_hierarchical_allreduce_train_to_the_end():
    # 1438 digits on 3 ranks: shards of 480, 479, 479; batches of 479 give rank 0 two steps, the others one
    args = ["-m", "minidl.train", "--no-progress", "--epochs", "2", "--batch-size", "479", "--uneven"]
    proc = run_mpi(3, [*args, "--ranks-per-node", "2", "--link", "1Gbps,100us"], timeout=240)
    assert "2 rank(s) per node, uneven shards (join)" in proc.stdout
    assert "done: test accuracy" in proc.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ranks-per-node", "0"], "--ranks-per-node must be a positive integer or 'host', got 0"),
        (["--ranks-per-node", "two"], "--ranks-per-node must be a positive integer or 'host', got 'two'"),
        (["--uneven", "--accumulation", "2"], "--uneven needs --accumulation 1 (got 2)"),
        (["--ranks-per-node", "2", "--comm-hook", "fp16"], "--ranks-per-node with --comm-hook fp16"),
        (["--ranks-per-node", "2", "--zero-stage", "2"], "--ranks-per-node with --zero-stage 2"),
        (["--uneven", "--zero-stage", "1"], "--uneven with --zero-stage 1"),
        (["--uneven", "--comm-hook", "bf16"], "--uneven with --comm-hook bf16"),
    ],
)
def test_bad_node_options_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0]
