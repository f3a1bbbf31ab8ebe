"""SyncBatchNorm: on one rank it is BatchNorm; under mpiexec, BatchNorm of the global batch (mpi_sync_bn_check.py)."""

from pathlib import Path

import numpy as np
import pytest
from mpi_launch import run_mpi

import minidl
from minidl import nn
from minidl.distributed import SyncBatchNorm, convert_sync_batchnorm
from minidl.distributed.sync_batchnorm import SyncBatchNormFunction
from minidl.gradcheck import gradcheck
from minidl.models.resnet import resnet8

CHECK = str(Path(__file__).parent / "mpi_sync_bn_check.py")
F64 = np.float64


def _run(layer, x, g):
    """Output, input/weight/bias gradients of ``sum(layer(x) * g)``."""
    xt = minidl.tensor(x, requires_grad=True)
    out = layer(xt)
    (out * minidl.tensor(g)).sum().backward()
    return out.data, xt.grad.data, layer.weight.grad.data, layer.bias.grad.data


def _pair(c, **kw):
    """A BatchNorm2d and a SyncBatchNorm with the same non-trivial weights and running statistics."""
    rng = np.random.default_rng(1)
    bn, sync = nn.BatchNorm2d(c, dtype=F64, **kw), SyncBatchNorm(c, dtype=F64, **kw)
    for name, value in [
        ("weight", rng.normal(size=c)),
        ("bias", rng.normal(size=c)),
        ("running_var", 1 + rng.random(c)),
    ]:
        getattr(bn, name).data[...] = value
        getattr(sync, name).data[...] = value
    return bn, sync


@pytest.mark.parametrize("momentum", [0.1, None])
def test_one_rank_layer_equals_batchnorm2d_in_training_and_eval(momentum):
    rng = np.random.default_rng(0)
    bn, sync = _pair(3, momentum=momentum)
    for _ in range(2):
        x, g = rng.normal(2.0, 3.0, (4, 3, 5, 5)), rng.normal(size=(4, 3, 5, 5))
        for a, b in zip(_run(bn, x, g), _run(sync, x, g), strict=True):
            np.testing.assert_array_equal(a, b)
        bn.zero_grad(), sync.zero_grad()
    assert sync.state_dict().keys() == bn.state_dict().keys()
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(sync.state_dict()[key], value, err_msg=key)
    bn.eval(), sync.eval()
    x = rng.normal(size=(2, 3, 4, 4))
    np.testing.assert_array_equal(sync(minidl.tensor(x)).data, bn(minidl.tensor(x)).data)


def test_the_synchronised_op_on_one_rank_equals_batchnorm2d():
    """The op itself (sums and sums of squares, its own backward), not the one-rank shortcut of the layer."""
    rng = np.random.default_rng(2)
    bn, _ = _pair(3)
    x, g = rng.normal(-1.0, 2.0, (5, 3, 4, 2)), rng.normal(size=(5, 3, 4, 2))
    w, b = (minidl.tensor(bn.weight.data.copy(), requires_grad=True), minidl.tensor(bn.bias.data.copy(), True))
    rm, rv = bn.running_mean.data.copy(), bn.running_var.data.copy()
    xt = minidl.tensor(x, requires_grad=True)
    out = SyncBatchNormFunction.apply(
        xt, w, b, running_mean=rm, running_var=rv, momentum=0.1, eps=1e-5, comm=None, algorithm="ring"
    )
    (out * minidl.tensor(g)).sum().backward()
    expected = _run(bn, x, g)
    got = [out.data, xt.grad.data, w.grad.data, b.grad.data]
    for name, a, want in zip(["out", "x.grad", "w.grad", "b.grad"], got, expected, strict=True):
        np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(rm, bn.running_mean.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, bn.running_var.data, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape, affine", [((4, 2, 3, 3), True), ((5, 3), True), ((3, 2, 4), False)])
def test_gradcheck_of_the_synchronised_op(shape, affine):
    rng = np.random.default_rng(3)
    c = shape[1]
    x = minidl.tensor(rng.normal(size=shape), requires_grad=True)
    w = minidl.tensor(rng.normal(size=c), requires_grad=True) if affine else None
    b = minidl.tensor(rng.normal(size=c), requires_grad=True) if affine else None

    def fn(x, w, b):
        return SyncBatchNormFunction.apply(
            x, w, b, running_mean=None, running_var=None, momentum=0.1, eps=1e-5, comm=None, algorithm="ring"
        )

    assert gradcheck(fn, [x, w, b])


def test_one_value_per_channel_over_all_ranks_is_refused():
    with pytest.raises(ValueError, match=r"more than 1 value per channel over all ranks, got 1"):
        SyncBatchNormFunction.apply(
            minidl.tensor(np.ones((1, 2))), None, None, running_mean=None, running_var=None,
            momentum=0.1, eps=1e-5, comm=None, algorithm="ring",
        )  # fmt: skip


def test_wrong_input_and_algorithm_are_named():
    with pytest.raises(ValueError, match=r"unknown algorithm 'nope'"):
        SyncBatchNorm(3, algorithm="nope")
    with pytest.raises(ValueError, match=r"3 channels in dimension 1, got shape \(2, 4, 5, 5\)"):
        SyncBatchNorm(3)(minidl.tensor(np.ones((2, 4, 5, 5))))


def test_convert_replaces_every_nested_batchnorm_and_keeps_state():
    minidl.manual_seed(0)
    model = resnet8(width=4)
    rng = np.random.default_rng(4)
    for t in model.buffers():
        if t.data.dtype.kind == "f":
            t.data[...] = rng.random(t.shape) + 0.5
    bns = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(bns) >= 7  # stem, two per block, two projection shortcuts
    bns["layer2.0.bn1"].eps, bns["layer2.0.bn1"].momentum = 1e-3, None
    bns["layer1.0.bn2"].eval()
    params = {name: p for name, p in model.named_parameters()}
    state = {k: v.copy() for k, v in model.state_dict().items()}

    converted = convert_sync_batchnorm(model, comm="COMM")
    assert converted is model
    syncs = {name: m for name, m in model.named_modules() if isinstance(m, SyncBatchNorm)}
    assert syncs.keys() == bns.keys()
    for name, old in bns.items():
        new = syncs[name]
        assert new is not old and new.comm == "COMM"
        assert (new.num_features, new.eps, new.momentum, new.affine, new.track_running_stats, new.training) == (
            old.num_features, old.eps, old.momentum, old.affine, old.track_running_stats, old.training,
        )  # fmt: skip
        assert new.weight is old.weight and new.bias is old.bias and new.running_var is old.running_var
    assert all(p is params[name] for name, p in model.named_parameters())  # an optimizer built before stays valid
    assert model.state_dict().keys() == state.keys()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_convert_a_bare_batchnorm_without_affine_or_running_stats():
    bn = nn.BatchNorm1d(4, affine=False, track_running_stats=False, dtype=F64)
    sync = convert_sync_batchnorm(bn)
    assert isinstance(sync, SyncBatchNorm) and sync.weight is None and sync.running_mean is None
    assert sync.comm is None


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_sync_batchnorm_on_shards_equals_batchnorm_of_the_global_batch(nprocs):
    proc = run_mpi(nprocs, [CHECK], timeout=240)
    assert f"{nprocs} ranks: SyncBatchNorm ok" in proc.stdout, proc.stdout


@pytest.mark.mpi
def test_the_trainer_runs_with_sync_bn_on_two_ranks():
    args = ["-m", "minidl.train", "--dataset", "synthetic-images", "--model", "resnet", "--depth", "8"]
    args += ["--epochs", "1", "--batch-size", "8", "--train-size", "64", "--sync-bn"]
    proc = run_mpi(2, args, timeout=240)
    assert "SyncBatchNorm" in proc.stdout and "done: test accuracy" in proc.stdout, proc.stdout
