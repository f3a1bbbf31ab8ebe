"""``SyncBatchNorm``: batch normalisation whose statistics come from the global batch of all ranks.

With data parallelism each rank sees only its shard of the batch, so plain BatchNorm normalises
with statistics of a few samples, and a model's behaviour changes with the rank count. Here the
per-channel sum, sum of squares and count are reduced across ranks in ONE allreduce per forward
(packed in one float64 buffer), and the two per-channel sums the input gradient needs in ONE
allreduce per backward, so every rank normalises, and differentiates, as single-process
BatchNorm on the concatenated batch would. Weight and bias gradients stay local sums, to be
averaged by DDP like any other gradient. Shards may have different sizes (even zero).

The variance is ``E[x^2] - mean^2`` accumulated in float64 (what makes one collective enough);
for float32 activations that keeps the cancellation far below float32's own rounding.

On one rank, and in eval mode, the layer is exactly ``BatchNorm1d``/``BatchNorm2d``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.autograd import Context, Function
from minidl.distributed import comm as dist
from minidl.grad_mode import is_grad_enabled
from minidl.nn.module import Module
from minidl.nn.normalization import _BatchNorm
from minidl.tensor import DEFAULT_DTYPE, Tensor

__all__ = ["SyncBatchNorm", "SyncBatchNormFunction", "convert_sync_batchnorm"]


def _reduce_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes statistics are taken over (all but the channel dim 1) and the broadcast shape of a statistic."""
    c = x.shape[1]
    return (0, *range(2, x.ndim)), (1, c) + (1,) * (x.ndim - 2)


class SyncBatchNormFunction(Function):
    """Training-mode batch norm over the union of every rank's batch; one allreduce in forward, one in backward.

    Positional arguments: input, weight, bias (Tensors or None); keyword arguments: running_mean,
    running_var (updated in place with the global statistics, may be None), momentum, eps,
    comm (an mpi4py communicator, None = the world) and algorithm (an allreduce name).
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        weight: np.ndarray | None,
        bias: np.ndarray | None,
        running_mean: Any,
        running_var: Any,
        momentum: float,
        eps: float,
        comm: Any,
        algorithm: str,
    ) -> np.ndarray:
        c = x.shape[1]
        axes, bshape = _reduce_axes(x)
        # one buffer, one collective: [sum (C), sum of squares (C), count (1)]
        packed = np.empty(2 * c + 1, dtype=np.float64)
        packed[:c] = x.sum(axis=axes, dtype=np.float64)
        flat = x.reshape(x.shape[0], c, math.prod(x.shape[2:]))  # a view for contiguous input; empty shards too
        packed[c : 2 * c] = np.einsum("ncs,ncs->c", flat, flat, dtype=np.float64)
        packed[2 * c] = x.size // c
        dist.all_reduce(packed, "sum", algorithm, comm)
        n = float(packed[2 * c])
        if n < 2:
            raise ValueError(
                f"SyncBatchNorm: training needs more than 1 value per channel over all ranks, got {n:.0f} "
                f"(this rank's input {x.shape})"
            )
        mean = packed[:c] / n
        var = np.maximum(packed[c : 2 * c] / n - mean * mean, 0.0)  # clamp: rounding may dip below 0
        for stat, value in ((running_mean, mean), (running_var, var * (n / (n - 1)))):
            if stat is not None:
                arr = stat.data if isinstance(stat, Tensor) else stat
                arr *= 1.0 - momentum
                arr += (momentum * value).astype(arr.dtype, copy=False)
        invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False).reshape(bshape)
        xhat = (x - mean.astype(x.dtype, copy=False).reshape(bshape)) * invstd
        ctx.xhat, ctx.invstd, ctx.axes, ctx.count = xhat, invstd, axes, n
        out = xhat if weight is None else xhat * weight.reshape(bshape)
        return out if bias is None else out + bias.reshape(bshape)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        if is_grad_enabled():
            raise NotImplementedError("SyncBatchNorm: create_graph (double backward) is not supported")
        weight = ctx.inputs[1]
        g = grad.data
        c = g.shape[1]
        _, bshape = _reduce_axes(g)
        xhat, axes = ctx.xhat, ctx.axes
        gx = gw = gb = None
        nx, nw, nb = ctx.needs_input_grad[:3]
        local_gb = g.sum(axis=axes)
        local_gw = (g * xhat).sum(axis=axes)
        if nx:
            # d loss / d xhat, summed over the global batch: [sum dxhat (C), sum dxhat * xhat (C)] in one buffer
            w = 1.0 if weight is None else weight.data
            packed = np.concatenate([local_gb * w, local_gw * w]).astype(np.float64, copy=False)
            dist.all_reduce(packed, "sum", ctx.kwargs["algorithm"], ctx.kwargs["comm"])
            mean_d = (packed[:c] / ctx.count).astype(g.dtype, copy=False).reshape(bshape)
            mean_dx = (packed[c:] / ctx.count).astype(g.dtype, copy=False).reshape(bshape)
            dxhat = g if weight is None else g * weight.data.reshape(bshape)
            gx = Tensor._make((dxhat - mean_d - xhat * mean_dx) * ctx.invstd)
        if nw:
            gw = Tensor._make(local_gw.astype(g.dtype, copy=False))
        if nb:
            gb = Tensor._make(local_gb.astype(g.dtype, copy=False))
        return gx, gw, gb


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C), (N, C, L) or (N, C, H, W) with statistics of the batch of all ranks of ``comm``.

    Arguments as ``BatchNorm2d``, plus ``comm`` (an mpi4py communicator; None = the world, looked
    up at each forward) and ``algorithm`` (the allreduce; statistics buffers are tiny, so latency
    dominates). Running statistics are updated with the global mean and unbiased global variance,
    so they stay identical on every rank. Training on one rank, and eval mode, is plain BatchNorm.
    """

    _expected_dims = (2, 3, 4)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        comm: Any = None,
        algorithm: str = "ring",
        dtype: Any = DEFAULT_DTYPE,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.comm = comm
        self.algorithm = dist.check_algorithm(algorithm)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or dist.get_world_size(self.comm) == 1:
            return super().forward(x)
        if x.ndim not in self._expected_dims or x.shape[1] != self.num_features:
            raise ValueError(
                f"SyncBatchNorm({self.num_features}): expected a 2-D, 3-D or 4-D input with {self.num_features} "
                f"channels in dimension 1, got shape {x.shape}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # cumulative average, as BatchNorm
                factor = 1.0 / float(self.num_batches_tracked.data)
        return SyncBatchNormFunction.apply(
            x,
            self.weight,
            self.bias,
            running_mean=self.running_mean,
            running_var=self.running_var,
            momentum=factor,
            eps=float(self.eps),
            comm=self.comm if self.comm is not None else dist.world(),
            algorithm=self.algorithm,
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", algorithm={self.algorithm!r}"


def convert_sync_batchnorm(module: Module, comm: Any = None) -> Module:
    """Replace every BatchNorm1d/2d in ``module``'s tree with a :class:`SyncBatchNorm`, as PyTorch's function does.

    The new layers share the old ones' weight and bias Parameters (an optimizer built before
    stays valid) and running-statistics buffers, and copy eps, momentum, affine,
    track_running_stats and the training flag. Returns ``module`` itself, or the new layer if
    ``module`` is a BatchNorm.
    """
    if isinstance(module, _BatchNorm):
        state = module.running_mean if module.running_mean is not None else module.weight
        dtype = DEFAULT_DTYPE if state is None else state.data.dtype
        sync = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            comm=comm if comm is not None else getattr(module, "comm", None),
            algorithm=getattr(module, "algorithm", "ring"),
            dtype=dtype,
        )
        if module.affine:
            sync.weight, sync.bias = module.weight, module.bias
        if module.track_running_stats:
            sync.running_mean = module.running_mean
            sync.running_var = module.running_var
            sync.num_batches_tracked = module.num_batches_tracked
        sync.train(module.training)
        return sync
    for name, child in list(module.named_children()):
        module.add_module(name, convert_sync_batchnorm(child, comm))
    return module
