"""ZeRO (Rajbhandari et al. 2020): each rank keeps and updates only its shard of the optimizer state.

Plain data parallelism keeps p identical copies of everything: parameters, gradients and the
optimizer's state (Adam's two moments are twice the model). ZeRO stage 1 cuts the state into p
shards: every bucket of :class:`DistributedDataParallel` is a flat range of parameters, and rank r
owns chunk r of each bucket (``shard_bounds``: contiguous, the first ``n % p`` chunks one element
longer, the same chunks as ``reduce_scatter`` and ``all_gather``). After backward's allreduce a
rank updates only its chunk, with an ordinary optimizer over flat views, and an allgather per
bucket brings every rank the updated parameters from their owners. Stage 2 also shards the
gradients: a communication hook reduce-scatters each bucket instead of allreducing it, so a rank
receives only its own chunk averaged (half a ring allreduce's traffic; with the parameter
allgather, the same bytes as plain DDP) and never holds the averaged full gradient.

The update is elementwise for SGD, Adam and AdamW, so cutting parameters at arbitrary points
gives the same numbers as the unsharded optimizer; LARS and LAMB need per-parameter norms, which
a cut would change, so they are refused. To make the allgather write straight into the model,
each bucket's parameters become views into one flat array (as DeepSpeed's flat parameter groups).

What stays full-size in this implementation: the parameters, and DDP's gradient buckets, in which
backward accumulates the *local* gradient before the reduce-scatter (DDP keeps them for overlap
and ``no_sync``); at stage 2 only this rank's chunk of them holds the averaged gradient, the rest
is the reduce-scatter's workspace, so ``p.grad`` must not be read there: use
:meth:`ZeroRedundancyOptimizer.clip_grad_norm_` and
:meth:`ZeroRedundancyOptimizer.first_nonfinite_gradient`, which work on the shards.

Checkpoints are gathered (:meth:`consolidate_state_dict`) into the unsharded optimizer's own
``state_dict`` layout, so one file resumes on any rank count (resharding is a slice), with or
without ZeRO.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from minidl.distributed import comm as dist
from minidl.distributed.ddp import DistributedDataParallel
from minidl.distributed.hooks import GradBucket
from minidl.grad_mode import enable_grad
from minidl.optim import SGD, Adam, Optimizer
from minidl.tensor import Tensor

ELEMENTWISE = (SGD, Adam)  # AdamW is an Adam: updates that treat every element on its own


@dataclass
class _Piece:
    """A contiguous range of one bucket owned by this rank, inside one parameter group:
    one tensor for the inner optimizer, whose data and gradient are views into the bucket."""

    bucket: int
    lo: int  # offsets in the bucket's flat arrays
    hi: int
    group: int
    tensor: Tensor


@dataclass
class _Slot:
    """Where a parameter lives: its bucket and its offset there."""

    bucket: int
    offset: int


class ZeroRedundancyOptimizer:
    """Shards ``optimizer_class``'s state (``stage=1``) and the averaged gradients (``stage=2``) over DDP's ranks.

    Shaped like ``torch.distributed.optim.ZeroRedundancyOptimizer``: build it with the DDP model,
    the optimizer class and its hyperparameters, then use it as the optimizer (``step``,
    ``zero_grad``, ``param_groups`` for schedulers, ``consolidate_state_dict`` then
    ``state_dict`` to save). ``param_groups`` (a list of dicts with "params" and
    hyperparameters) may replace the single group of all DDP parameters; the dicts are used as
    they are, so a scheduler driving them drives this optimizer. Build it before the first
    backward (stage 2 registers DDP's communication hook).
    """

    def __init__(
        self,
        ddp: DistributedDataParallel,
        optimizer_class: type[Optimizer],
        stage: int = 1,
        *,
        param_groups: list[dict[str, Any]] | None = None,
        **defaults: Any,
    ) -> None:
        if not isinstance(ddp, DistributedDataParallel):
            raise TypeError(
                "ZeroRedundancyOptimizer: pass the DistributedDataParallel model (the shards follow its buckets), "
                f"got {type(ddp).__name__}"
            )
        if stage not in (1, 2):
            raise ValueError(f"ZeroRedundancyOptimizer: stage must be 1 or 2, got {stage!r}")
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, ELEMENTWISE)):
            name = getattr(optimizer_class, "__name__", repr(optimizer_class))
            raise ValueError(
                f"ZeroRedundancyOptimizer: {name} is not supported: a shard cuts parameters at arbitrary points, "
                "which only an elementwise update survives (LARS and LAMB use per-parameter norms); "
                "supported: SGD, Adam, AdamW"
            )
        self.ddp = ddp
        self.stage = stage
        self.comm = ddp.comm.Dup()  # the parameter allgathers never meet DDP's messages
        self.rank, self.world_size = ddp.rank, ddp.world_size
        self.param_groups = param_groups if param_groups is not None else [{"params": list(ddp._params)}]
        group_of = self._group_of()
        self._flat_params = [_flatten_parameters(b.params, b.flat.dtype) for b in ddp.buckets]
        self._slots = {}
        self._pieces: list[_Piece] = []
        for bi, bucket in enumerate(ddp.buckets):
            n = self._flat_params[bi].size
            bounds = dist.shard_bounds(n, self.world_size)
            self._pieces += _pieces_of(
                bi, bucket, self._flat_params[bi], bounds[self.rank], bounds[self.rank + 1], group_of
            )
            offset = 0
            for p in bucket.params:
                self._slots[id(p)] = _Slot(bi, offset)
                offset += p.size
        inner_groups = [
            {**_hyper(g), "params": [pc.tensor for pc in self._pieces if pc.group == gi]}
            for gi, g in enumerate(self.param_groups)
        ]
        self.optim = optimizer_class(inner_groups, **defaults)  # every rank validates the hyperparameters
        for g, inner in zip(self.param_groups, self.optim.param_groups):
            for k, v in _hyper(inner).items():
                g.setdefault(k, v)
        self.defaults = self.optim.defaults
        self._sharded_grads = stage == 2 and self.world_size > 1
        self._grad_sq_norm = math.nan  # stage 2: the squared norm of the averaged gradient, from the hook
        self._consolidated: dict[str, Any] | None = None
        self.allgather_bytes = 0  # bytes of parameters allgathered by the latest step
        if self._sharded_grads:
            ddp.register_comm_hook(self, reduce_scatter_hook)

    @classmethod
    def from_optimizer(cls, optimizer: Optimizer, ddp: DistributedDataParallel, stage: int = 1) -> Any:
        """Shard an existing optimizer: its class, its groups (the same dicts) and its state, resharded.

        ``optimizer`` keeps no state afterwards (the shards hold it), so building the plain
        optimizer first, loading a checkpoint into it and then sharding costs no lasting memory.
        """
        zero = cls(ddp, type(optimizer), stage, param_groups=optimizer.param_groups, **optimizer.defaults)
        if optimizer.state:
            zero.load_state_dict(optimizer.state_dict())
            optimizer.state = {}
        return zero

    def _group_of(self) -> dict[int, int]:
        """Parameter id -> group index; every group parameter must be one of DDP's."""
        ours = {id(p) for p in self.ddp._params}
        group_of: dict[int, int] = {}
        for gi, g in enumerate(self.param_groups):
            for p in g["params"]:
                if id(p) not in ours:
                    raise ValueError(
                        f"ZeroRedundancyOptimizer: parameter group {gi} holds a tensor of shape {p.shape} that is not "
                        "a parameter of the DistributedDataParallel model (or does not require a gradient)"
                    )
                if id(p) in group_of:
                    raise ValueError("ZeroRedundancyOptimizer: some parameters appear more than once in the groups")
                group_of[id(p)] = gi
        return group_of

    # ------------------------------------------------------------------ the step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update this rank's shard, then allgather the updated parameters from their owners."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._check_views()
        self._zero_missing_gradients()
        for g, inner in zip(self.param_groups, self.optim.param_groups):
            inner.update(_hyper(g))  # a scheduler changed the user's groups
        self.optim.step()
        gathered = 0
        if self.world_size > 1:
            for i, flat in enumerate(self._flat_params):
                # the first call of a step checks agreement, which arms the watchdog against a stalled rank
                dist.all_gather(flat, self.comm, check=i == 0)
                gathered += flat.nbytes
        self.allgather_bytes = gathered
        return loss

    def _check_views(self) -> None:
        """Re-attach a parameter whose ``.data`` was replaced (not copied into) since the last step."""
        for bi, bucket in enumerate(self.ddp.buckets):
            flat = self._flat_params[bi]
            start = flat.__array_interface__["data"][0]
            offset = 0
            for p in bucket.params:
                if p.data.base is not flat or p.data.__array_interface__["data"][0] != start + offset * flat.itemsize:
                    view = flat[offset : offset + p.size]
                    view[...] = p.data.reshape(-1)
                    p.data = view.reshape(p.shape)
                offset += p.size

    def _zero_missing_gradients(self) -> None:
        """A parameter without a gradient (backward did not reach it on any rank, or none ran since
        ``zero_grad``) would step with what its bucket view last held: make it a zero gradient, as DDP
        does for unused parameters. (The unsharded optimizer skips such a parameter, momentum and weight
        decay included; a shard cutting through parameters steps as one tensor.)"""
        for bucket in self.ddp.buckets:
            for p, view in zip(bucket.params, bucket.views):
                if p.grad is None:
                    view[...] = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter of the groups (all of them, not only the shard)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise NotImplementedError(
            "ZeroRedundancyOptimizer.add_param_group: the shards are cut once from DDP's buckets; "
            "pass every group to the constructor (param_groups=...)"
        )

    # ------------------------------------------------------------------ on the sharded gradient
    def _grad_squared_norm(self) -> float:
        """The squared 2-norm of the averaged gradient, the same on every rank."""
        if self._sharded_grads:
            return self._grad_sq_norm
        total = np.zeros(1)
        for pc in self._pieces:
            g = pc.tensor.grad.data
            total[0] += float(np.vdot(g, g).real)
        if self.world_size > 1:
            dist.all_reduce(total, "sum", comm=self.comm)
        return float(total[0])

    def clip_grad_norm_(self, max_norm: float) -> float:
        """Scale the gradients so their global 2-norm is at most ``max_norm``; returns the norm before.

        As ``minidl.nn.utils.clip_grad_norm_`` (scale ``max_norm / (norm + 1e-6)`` when below 1),
        computed from the shards, which is what stage 2 holds. Only the shards are scaled: the
        optimizer reads nothing else.
        """
        if max_norm < 0:
            raise ValueError(f"ZeroRedundancyOptimizer.clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
        total = math.sqrt(self._grad_squared_norm())
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for pc in self._pieces:
                g = pc.tensor.grad.data
                g *= g.dtype.type(coef)
            self._grad_sq_norm *= coef * coef  # still the norm of what the shards hold
        return total

    def first_nonfinite_gradient(self) -> str | None:
        """The first parameter (DDP's order) whose averaged gradient holds NaN or Inf, or None; every rank agrees.

        Stage 1 asks DDP (every rank holds the whole gradient). At stage 2 the hook's squared norm
        answers "none" without a message; otherwise the ranks agree on the first bad parameter in
        one tiny allreduce. The squared norm also replaces DDP's noise-scale figure, which DDP summed
        over buckets that at stage 2 hold reduce-scatter workspace outside this rank's chunk.
        """
        if not self._sharded_grads:
            return self.ddp.first_nonfinite_gradient()
        if self.ddp.measure_noise_scale:
            self.ddp.stats.global_sq_norm = self._grad_sq_norm
        if math.isfinite(self._grad_sq_norm):
            return None
        order = {id(p): i for i, p in enumerate(self.ddp._params)}
        first = np.array([math.inf])
        for pc in self._pieces:
            bad = np.flatnonzero(~np.isfinite(pc.tensor.grad.data))
            if bad.size:
                first[0] = min(first[0], self._param_at(pc.bucket, pc.lo + int(bad[0]), order))
        dist.all_reduce(first, "min", comm=self.comm)
        if not math.isfinite(first[0]):  # the norm overflowed: every element finite, their squares not
            return None
        p = self.ddp._params[int(first[0])]
        return self.ddp.param_names[id(p)]

    def _param_at(self, bucket: int, offset: int, order: dict[int, int]) -> int:
        """DDP's index of the parameter holding element ``offset`` of ``bucket``."""
        for p in self.ddp.buckets[bucket].params:
            start = self._slots[id(p)].offset
            if start <= offset < start + p.size:
                return order[id(p)]
        raise AssertionError(f"offset {offset} is past bucket {bucket}")

    # ------------------------------------------------------------------ memory
    def memory(self) -> dict[str, int]:
        """Bytes this rank holds: the optimizer state (sharded), the averaged gradient it keeps
        (sharded at stage 2), DDP's gradient buckets and the parameters (both full-size)."""
        state = sum(v.nbytes for s in self.optim.state.values() for v in s.values() if isinstance(v, np.ndarray))
        buckets = sum(b.flat.nbytes for b in self.ddp.buckets)
        shard = sum(pc.tensor.grad.data.nbytes for pc in self._pieces)
        return {
            "optimizer_state": int(state),
            "averaged_gradient": int(shard if self._sharded_grads else sum(f.nbytes for f in self._flat_params)),
            "gradient_buckets": int(buckets),
            "parameters": int(sum(f.nbytes for f in self._flat_params)),
        }

    # ------------------------------------------------------------------ checkpoints
    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gather the whole state into rank ``to`` (collective: call it on every rank), in the unsharded
        optimizer's layout; :meth:`state_dict` on that rank then returns it."""
        if not 0 <= to < self.world_size:
            raise ValueError(
                f"ZeroRedundancyOptimizer.consolidate_state_dict: to={to} is not a rank of 0..{self.world_size - 1}"
            )
        mine = [(pc.bucket, pc.lo, pc.hi, _scalars(self.optim.state.get(id(pc.tensor), {}))) for pc in self._pieces]
        everyone = [m for rank_meta in self.comm.allgather(mine) for m in rank_meta]  # small, once per checkpoint
        arrays: dict[tuple[int, str], np.ndarray] = {}
        for bi, flat_params in enumerate(self._flat_params):
            keys = sorted({k for b, _, _, s in everyone if b == bi for k, v in s.items() if v is None})
            for key in keys:
                full = np.zeros_like(flat_params)
                for pc in self._pieces:
                    if pc.bucket == bi and key in self.optim.state.get(id(pc.tensor), {}):
                        full[pc.lo : pc.hi] = self.optim.state[id(pc.tensor)][key]
                arrays[bi, key] = dist.all_gather(full, self.comm)
        if self.rank != to:
            self._consolidated = None
            return
        state: dict[int, dict[str, Any]] = {}
        for index, p in enumerate(self._ordered_params()):
            slot = self._slots[id(p)]
            end = slot.offset + p.size
            covering = [s for b, lo, hi, s in everyone if b == slot.bucket and lo < end and hi > slot.offset]
            if not covering or not covering[0]:
                continue
            entry = {}
            for key, scalar in covering[0].items():
                if scalar is None:
                    entry[key] = arrays[slot.bucket, key][slot.offset : end].reshape(p.shape).copy()
                else:
                    entry[key] = scalar
            state[index] = entry
        groups, start = [], 0
        for g in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            saved["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(saved)
        self._consolidated = {"state": state, "param_groups": groups}

    def state_dict(self) -> dict[str, Any]:
        """The whole state in the unsharded optimizer's layout, on the rank ``consolidate_state_dict`` gathered to."""
        if self._consolidated is None:
            raise RuntimeError(
                f"ZeroRedundancyOptimizer.state_dict: rank {self.rank} holds only its shard of the optimizer state; "
                "call consolidate_state_dict(to=RANK) on every rank first, then state_dict() on RANK"
            )
        saved, self._consolidated = self._consolidated, None  # never hand out a state older than the next step
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take this rank's shard of a whole state (from :meth:`state_dict` or an unsharded optimizer,
        saved on any rank count). Checked as ``Optimizer.load_state_dict`` checks; nothing changes on error."""
        params = self._ordered_params()
        # The unsharded optimizer's checks and conversions, over the real parameters; errors name the real class.
        check = type(type(self.optim).__name__, (_ShapeOnly,), {})(self.param_groups)
        check.load_state_dict(state_dict)
        by_id = {id(p): check.state.get(id(p), {}) for p in params}
        new_state: dict[int, dict[str, Any]] = {}
        for pc in self._pieces:
            parts = self._parts(pc)
            stated = [bool(by_id[id(p)]) for p, _, _ in parts]
            if not any(stated):
                continue
            if not all(stated):
                names = [self.ddp.param_names[id(p)] for (p, _, _), s in zip(parts, stated) if not s]
                raise ValueError(
                    f"ZeroRedundancyOptimizer.load_state_dict: parameter {names[0]!r} has no saved state while its "
                    "neighbours in the same shard have some; a shard steps as one tensor"
                )
            entry = {}
            for key, value in by_id[id(parts[0][0])].items():
                if isinstance(value, np.ndarray):
                    entry[key] = np.concatenate([by_id[id(p)][key].reshape(-1)[a:b] for p, a, b in parts])
                else:
                    entry[key] = value
            new_state[id(pc.tensor)] = entry
        for g, saved in zip(self.param_groups, check.param_groups):
            g.update(_hyper(saved))
        self.optim.state = new_state

    def _parts(self, pc: _Piece) -> list[tuple[Any, int, int]]:
        """(parameter, start, end) of the flat ranges of each parameter inside piece ``pc``."""
        parts = []
        for p in self.ddp.buckets[pc.bucket].params:
            o = self._slots[id(p)].offset
            a, b = max(o, pc.lo), min(o + p.size, pc.hi)
            if a < b:
                parts.append((p, a - o, b - o))
        return parts

    def _ordered_params(self) -> list[Any]:
        return [p for g in self.param_groups for p in g["params"]]

    def close(self) -> None:
        """Free the private communicator (the DDP model has its own ``close``)."""
        with contextlib.suppress(Exception):
            self.comm.Free()

    def __repr__(self) -> str:
        return (
            f"ZeroRedundancyOptimizer(stage={self.stage}, rank {self.rank} of {self.world_size}, "
            f"{len(self._pieces)} shard piece(s), inner={type(self.optim).__name__})"
        )


def reduce_scatter_hook(zero: ZeroRedundancyOptimizer, bucket: GradBucket) -> None:
    """Stage 2's communication hook: leave only this rank's chunk of the bucket averaged.

    Ring reduce-scatter: the first half of the ring allreduce's walk, so the chunk holds exactly
    what a ring allreduce would have put there. The rest of ``bucket.buffer`` is workspace.
    ``wire_bytes`` is half the bucket: the allreduce of that size costs what this reduce-scatter does.
    The hook also sums the chunks' squared norms and, at the last bucket, reduces that one number,
    so every rank knows the gradient's norm (clipping, NaN/Inf checks) without the full gradient.
    """
    mine = dist.reduce_scatter(bucket.buffer, "avg", bucket.comm, check=bucket.check)
    bucket.wire_bytes = bucket.buffer.nbytes // 2
    square = float(np.vdot(mine, mine).real)
    zero._grad_sq_norm = square if bucket.index == 0 else zero._grad_sq_norm + square
    if bucket.is_last:
        total = np.array([zero._grad_sq_norm])
        bucket.all_reduce(total, "sum", check=False)
        zero._grad_sq_norm = float(total[0])


class _ShapeOnly(Optimizer):
    """The unsharded optimizer's checks of a state dict, over the real parameters, without their updates."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        self.defaults = {k: v for g in groups for k, v in _hyper(g).items()}
        self.param_groups = [{**g} for g in groups]
        self.state = {}


def _flatten_parameters(params: list[Any], dtype: np.dtype) -> np.ndarray:
    """One flat array for a bucket's parameters; each ``p.data`` becomes a view into it (values kept)."""
    flat = np.empty(sum(p.size for p in params), dtype=dtype)
    offset = 0
    for p in params:
        view = flat[offset : offset + p.size]
        view[...] = p.data.reshape(-1)
        p.data = view.reshape(p.shape)
        offset += p.size
    return flat


def _pieces_of(bi: int, bucket: Any, flat: np.ndarray, lo: int, hi: int, group_of: dict[int, int]) -> list[_Piece]:
    """This rank's range [lo, hi) of bucket ``bi``, cut where the parameter group changes."""
    runs: list[list[int]] = []  # [start, end, group]
    offset = 0
    for p in bucket.params:
        a, b = max(offset, lo), min(offset + p.size, hi)
        group = group_of.get(id(p))
        if a < b and group is not None:
            if runs and runs[-1][1] == a and runs[-1][2] == group:
                runs[-1][1] = b
            else:
                runs.append([a, b, group])
        offset += p.size
    pieces = []
    for a, b, group in runs:
        t = Tensor._make(flat[a:b])
        t.grad = Tensor._make(bucket.flat[a:b])
        pieces.append(_Piece(bi, a, b, group, t))
    return pieces


def _hyper(group: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k != "params"}


def _scalars(state: dict[str, Any]) -> dict[str, Any]:
    """A piece's state with arrays replaced by None: what the ranks tell each other before gathering."""
    return {k: None if isinstance(v, np.ndarray) and v.ndim > 0 else v for k, v in state.items()}
