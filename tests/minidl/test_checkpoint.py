"""Checkpoints: exact round trips, no pickle, atomic writes, clear errors, and bit-for-bit resume
in a fresh process.

Run as a script, this file is also the training worker of the resume test:
``python test_checkpoint.py WORKDIR START STOP`` trains steps START..STOP (loading
``WORKDIR/ckpt_START.npz`` when START > 0) and saves ``WORKDIR/ckpt_STOP.npz``.
"""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import checkpoint, nn, optim
from minidl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minidl.data import DataLoader, Subset, TensorDataset, load_digits
from minidl.data import transforms as T
from minidl.optim import lr_scheduler as S

# ----------------------------------------------------------------------------- the training run
ROOT = Path(__file__).resolve().parents[2]
BATCH = 32
TOTAL_STEPS = 16  # 6 steps per epoch: the resume point (8) is in the middle of epoch 1


def build():
    """Model (conv, batch norm buffers, dropout), AdamW with a schedule, augmented shuffled data."""
    minidl.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(64, 10),
    )
    opt = optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    sched = S.warmup_cosine(opt, warmup_steps=4, total_steps=TOTAL_STEPS, start_factor=0.25)
    x, y = Subset(load_digits("train", flatten=False), np.arange(200))[np.arange(200)]
    data = TensorDataset(x, y, transform=T.Compose([T.RandomCrop(8, padding=1), T.RandomHorizontalFlip()]))
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, seed=7, drop_last=True)
    return model, opt, sched, loader


def train(workdir: Path, start: int, stop: int) -> None:
    model, opt, sched, loader = build()
    if start:
        tree = load_checkpoint(workdir / f"ckpt_{start}.npz", model, opt, sched)
        assert tree["step"] == start
    steps_per_epoch = len(loader)
    step = start
    while step < stop:
        epoch, offset = divmod(step, steps_per_epoch)
        loader.set_epoch(epoch, start_batch=offset)
        for x, y in itertools.islice(loader, stop - step):
            loss = minidl.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    save_checkpoint(workdir / f"ckpt_{stop}.npz", model, opt, sched, epoch=step // steps_per_epoch, step=step)


def run_worker(workdir: Path, start: int, stop: int) -> None:
    proc = subprocess.run(
        [sys.executable, __file__, str(workdir), str(start), str(stop)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OPENBLAS_NUM_THREADS": "1",  # the same (fast) BLAS setup in all three processes
        },
    )
    assert proc.returncode == 0, proc.stderr


def test_resume_in_fresh_process_is_bit_for_bit(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir()
    resumed.mkdir()
    run_worker(straight, 0, TOTAL_STEPS)
    run_worker(resumed, 0, TOTAL_STEPS // 2)
    run_worker(resumed, TOTAL_STEPS // 2, TOTAL_STEPS)
    a = checkpoint.load(straight / f"ckpt_{TOTAL_STEPS}.npz")
    b = checkpoint.load(resumed / f"ckpt_{TOTAL_STEPS}.npz")
    assert list(a["model"]) == list(b["model"])
    for name in a["model"]:
        np.testing.assert_array_equal(a["model"][name], b["model"][name], err_msg=name)
    for i, state in a["optimizer"]["state"].items():
        for k, v in state.items():
            np.testing.assert_array_equal(v, b["optimizer"]["state"][i][k], err_msg=f"{i}/{k}")
    assert a["scheduler"] == b["scheduler"] and a["rng"] == b["rng"]
    # and training did happen: the weights moved and the batch-norm statistics were tracked
    first = checkpoint.load(resumed / f"ckpt_{TOTAL_STEPS // 2}.npz")
    assert not np.array_equal(first["model"]["6.weight"], a["model"]["6.weight"])
    assert int(a["model"]["1.num_batches_tracked"]) == TOTAL_STEPS


# ----------------------------------------------------------------------------- round trips
def test_tree_round_trip_keeps_types_and_values(tmp_path):
    tree = {
        "a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "f32": np.float32(1.5),
        "nested": {"list": [1, 2.5, None, True, "s"], "tuple": (0.9, 0.999), "ints": {0: np.ones(2), 3: {"x": 1}}},
        "big": 2**100,
        "nan": float("nan"),
        "empty": np.zeros((0, 3)),
        "bool": np.array([True, False]),
    }
    checkpoint.save(tmp_path / "t.npz", tree)
    back = checkpoint.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back["a"], tree["a"])
    assert back["a"].dtype == np.int16 and back["f32"].dtype == np.float32
    assert back["nested"]["list"] == [1, 2.5, None, True, "s"]
    assert back["nested"]["tuple"] == (0.9, 0.999)
    assert sorted(back["nested"]["ints"]) == [0, 3] and back["nested"]["ints"][3] == {"x": 1}
    assert back["big"] == 2**100 and np.isnan(back["nan"])
    assert back["empty"].shape == (0, 3) and back["bool"].dtype == np.bool_


def test_everything_is_restored(tmp_path):
    model, opt, sched, loader = build()
    for _, (x, y) in zip(range(3), loader):
        loss = minidl.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    save_checkpoint(tmp_path / "c.npz", model, opt, sched, epoch=0, step=3, extra={"best": 0.5})
    expected_draw = minidl.random.generator().random(3)
    m2, o2, s2, _ = build()
    tree = load_checkpoint(tmp_path / "c.npz", m2, o2, s2)
    assert tree["epoch"] == 0 and tree["step"] == 3 and tree["extra"] == {"best": 0.5}
    np.testing.assert_array_equal(minidl.random.generator().random(3), expected_draw)
    for (k, v), v2 in zip(model.state_dict().items(), m2.state_dict().values()):
        np.testing.assert_array_equal(v, v2, err_msg=k)
    assert s2.get_last_lr() == sched.get_last_lr() and o2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert o2.state_dict()["state"][0]["step"] == 3


def test_loading_a_part_that_is_not_there(tmp_path):
    save_checkpoint(tmp_path / "m.npz", model=nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "m.npz", optimizer=optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        load_checkpoint(tmp_path / "m.npz", model=nn.Linear(3, 2))


# ----------------------------------------------------------------------------- safety
class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_no_pickle_on_save_or_load(tmp_path):
    with pytest.raises(TypeError, match="object array"):
        checkpoint.save(tmp_path / "x.npz", {"bad": np.array([Exploit()], dtype=object)})
    with pytest.raises(TypeError, match="Exploit"):
        checkpoint.save(tmp_path / "x.npz", {"bad": Exploit()})
    # a hostile file: valid header, plus an entry that only unpickling could read
    checkpoint.save(tmp_path / "evil.npz", {"w": np.zeros(2)})
    evil = tmp_path / "evil2.npz"
    meta = np.load(tmp_path / "evil.npz", allow_pickle=False)[checkpoint.META_KEY]
    np.savez(evil, **{checkpoint.META_KEY: meta, "w": np.array([Exploit()], dtype=object)})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(CheckpointError, match=r"evil2\.npz: corrupt or truncated"):
            checkpoint.load(evil)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned").exists()


def test_atomic_write_keeps_previous_checkpoint_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, {"w": np.ones(3)})

    def crash(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"w": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(checkpoint.load(path)["w"], np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary file left behind


def test_corrupt_truncated_foreign_and_newer_files_are_named(tmp_path):
    path = tmp_path / "good.npz"
    checkpoint.save(path, {"w": np.arange(1000.0)})
    data = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc\.npz: corrupt or truncated"):
        checkpoint.load(tmp_path / "trunc.npz")
    (tmp_path / "noise.npz").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"noise\.npz"):
        checkpoint.load(tmp_path / "noise.npz")
    np.savez(tmp_path / "plain.npz", w=np.zeros(2))
    with pytest.raises(CheckpointError, match=r"plain\.npz: not a minidl checkpoint"):
        checkpoint.load(tmp_path / "plain.npz")
    newer = '{"format": "minidl-checkpoint", "version": 99, "tree": {}}'
    np.savez(tmp_path / "newer.npz", **{checkpoint.META_KEY: np.array(newer)})
    with pytest.raises(CheckpointError, match="version 99 is newer"):
        checkpoint.load(tmp_path / "newer.npz")
    with pytest.raises(FileNotFoundError, match=r"missing\.npz does not exist"):
        checkpoint.load(tmp_path / "missing.npz")


def test_rng_state_round_trip():
    minidl.manual_seed(11)
    minidl.random.generator().random(5)
    state = minidl.random.get_rng_state()
    a = minidl.random.generator().standard_normal(4)
    minidl.manual_seed(0)
    minidl.random.set_rng_state(state)
    np.testing.assert_array_equal(minidl.random.generator().standard_normal(4), a)
    with pytest.raises(ValueError, match="unknown bit generator"):
        minidl.random.set_rng_state({"bit_generator": "os"})


if __name__ == "__main__":
    train(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))


# ----------------------------------------------------------------------------- a run's series of checkpoints
def _tiny():
    return nn.Linear(2, 1)


def test_series_keeps_the_newest_k_of_its_run_only(tmp_path):
    from minidl.checkpoint import CheckpointSeries

    series = CheckpointSeries(tmp_path, "run-a", keep=2)
    for epoch in range(1, 6):
        series.save(epoch, model=_tiny(), step=10 * epoch)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["run-a.epoch-0004.npz", "run-a.epoch-0005.npz"]
    assert checkpoint.load(tmp_path / "run-a.epoch-0005.npz")["step"] == 50


def test_a_new_run_writes_next_to_another_and_overwrite_replaces_it(tmp_path):
    from minidl.checkpoint import CheckpointSeries

    old = CheckpointSeries(tmp_path, "run-old", keep=3).save(1, model=_tiny())
    os.utime(old, (1e9, 1e9))  # written long ago (file times may be coarser than this test is fast)
    before = old.read_bytes()
    new = CheckpointSeries(tmp_path, CheckpointSeries.new_run_name(), keep=3)
    assert new.run != "run-old" and new.run.startswith("run-")
    new.save(1, model=_tiny())
    assert (tmp_path / "run-old.epoch-0001.npz").read_bytes() == before  # untouched
    assert sorted(CheckpointSeries.runs(tmp_path)) == sorted(["run-old", new.run])
    assert CheckpointSeries.latest(tmp_path) == new.path(1)
    CheckpointSeries(tmp_path, "run-third", keep=3, replace_others=True).save(2, model=_tiny())
    assert [p.name for p in tmp_path.iterdir()] == ["run-third.epoch-0002.npz"]


def test_series_names_and_missing_configuration_are_clear_errors(tmp_path):
    from minidl.checkpoint import CheckpointSeries

    with pytest.raises(ValueError, match="run name 'a/b'"):
        CheckpointSeries(tmp_path, "a/b")
    with pytest.raises(ValueError, match="keep must be at least 1"):
        CheckpointSeries(tmp_path, "r", keep=0)
    assert CheckpointSeries.latest(tmp_path / "missing") is None
    path = CheckpointSeries(tmp_path, "r").save(1, model=_tiny())
    with pytest.raises(CheckpointError, match="stores no run configuration"):
        CheckpointSeries.config_of(path)
    with pytest.raises(ValueError, match="not named like a run's checkpoint"):
        CheckpointSeries.run_of(tmp_path / "last.npz")
