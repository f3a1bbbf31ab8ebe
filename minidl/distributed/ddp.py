"""``DistributedDataParallel``: synchronous data-parallel SGD with bucketed, overlapped allreduce.

Every rank holds a replica of the model and computes gradients on its own shard of the batch.
Each parameter's ``.grad`` is a view into its bucket (a flat buffer), so backward accumulates
the gradient straight into the buffer that goes on the wire: no copy in, no copy back. When
every gradient of a bucket is complete (a post-accumulate hook counts them) the bucket is handed
to a communication thread that averages it across ranks (allreduce with op "avg", the division
done in the same call) while backward goes on computing the gradients of earlier layers. numpy's
BLAS and the MPI calls release the GIL, so the two really run at the same time. At the end of
backward the rank waits for the buckets still in flight and reduces the last bucket itself (it is
ready only when every gradient is, so there is nothing left to overlap it with): that time is the
*exposed* communication, the part overlap failed to hide.

As with PyTorch's ``gradient_as_bucket_view=True``, a gradient array kept across steps is
overwritten by the next step's gradient.

What happens to a bucket is a *communication hook* (:mod:`minidl.distributed.hooks`), as in
PyTorch: by default an allreduce; ``register_comm_hook`` swaps in compression or any other
scheme without touching the bucketing, the overlap or the measurements.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minidl import autograd
from minidl.distributed import comm as dist
from minidl.distributed.buckets import Bucket, build_buckets
from minidl.distributed.finite import first_nonfinite
from minidl.distributed.hooks import CommHook, GradBucket, allreduce_hook
from minidl.distributed.join import CHECK_REPLICAS, SYNC_BUFFERS, SYNC_GRADS, Join
from minidl.distributed.replicas import check_same_layout, checksum, layout
from minidl.nn.module import Module, Parameter
from minidl.tensor import Tensor

SWITCH_INTERVAL = 2e-4  # seconds; see DistributedDataParallel.__init__
POLL_INTERVAL = 50e-6  # seconds between tests of a pending message (comm.poll_waits)


@dataclass
class SyncStats:
    """Communication measurements of the most recent synchronised step (seconds)."""

    comm_seconds: float = 0.0  # time the comm thread spent in allreduce calls
    exposed_seconds: float = 0.0  # time backward waited for communication at its end
    messages: int = 0  # hook calls (one per bucket)
    bytes: int = 0  # bytes of gradient reduced
    wire_bytes: int = 0  # bytes this rank sent as the hooks report them (== bytes without compression)
    local_sq_norm: float = float("nan")  # rank-averaged squared norm of the local gradients
    global_sq_norm: float = float("nan")  # squared norm of the averaged gradient
    intervals: list[tuple[int, float, float]] = field(default_factory=list)  # (bucket, perf_counter start, end)

    @property
    def overlap_efficiency(self) -> float:
        """Fraction of communication time hidden behind backward computation."""
        if self.comm_seconds <= 0:
            return float("nan")
        return max(0.0, 1.0 - self.exposed_seconds / self.comm_seconds)


class DistributedDataParallel(Module):
    """Wraps ``module`` so that ``loss.backward()`` leaves every rank with the averaged gradient.

    Arguments follow ``torch.nn.parallel.DistributedDataParallel`` where they overlap.
    ``algorithm`` is any name in ``minidl.distributed.algorithms()``; ``link`` emulates a slower
    interconnect for the gradient allreduces (a ``Link``, a preset name or "10Gbps,20us"); ``overlap=False`` reduces all
    buckets after backward instead (the baseline that shows what overlap buys);
    ``check_every=N`` compares a bitwise checksum of the parameters across ranks every N
    synchronised steps and raises if replicas have drifted; ``broadcast_buffers`` copies rank
    0's buffers (BatchNorm running statistics) to all ranks at every forward, as PyTorch does,
    so replicas stay identical (each rank still normalises with its own batch statistics); ``measure_noise_scale`` also
    computes the squared norms the gradient noise scale needs (one extra tiny allreduce);
    ``ranks_per_node`` (an int, or "host" for the hosts MPI reports) makes the gradient allreduce
    hierarchical: reduce in each node, ``algorithm`` among the node leaders (over ``link``, if
    given), broadcast in each node (``collectives.hierarchical``). ``join()`` lets ranks with
    different numbers of batches finish together (:mod:`minidl.distributed.join`).
    """

    def __init__(
        self,
        module: Module,
        comm: Any = None,
        algorithm: str = "ring",
        bucket_cap_mb: float = 25.0,
        first_bucket_mb: float = 1.0,
        overlap: bool = True,
        check_every: int = 0,
        broadcast_buffers: bool = True,
        measure_noise_scale: bool = False,
        link: dist.Link | str | None = None,
        ranks_per_node: int | str | None = None,
    ) -> None:
        super().__init__()
        dist.check_algorithm(algorithm)
        if ranks_per_node is not None and ranks_per_node != "host":
            if isinstance(ranks_per_node, bool) or not isinstance(ranks_per_node, int) or ranks_per_node < 1:
                raise ValueError(f"ranks_per_node must be a positive integer, 'host' or None, got {ranks_per_node!r}")
        if check_every < 0:
            raise ValueError(f"check_every must be >= 0, got {check_every}")
        self.module = module
        base = comm if comm is not None else dist.world()
        # A private communicator: our allreduces can never match messages of the user's code,
        # even while the comm thread runs concurrently with the main thread.
        self.comm = base.Dup()
        # Waits that sleep between tests: a wait spinning inside MPI would take the core from backward
        # (and from the rank it waits for) while buckets are in flight.
        dist.poll_waits(self.comm, POLL_INTERVAL)
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self.algorithm = algorithm
        self.overlap = overlap
        self.check_every = check_every
        self.broadcast_buffers = broadcast_buffers
        self.measure_noise_scale = measure_noise_scale
        self.link = dist.resolve_link(link)
        self.ranks_per_node = ranks_per_node

        # Different models on different ranks would make the broadcast below fail obscurely (or hang).
        check_same_layout(layout(self._state_arrays()), self.comm, "DistributedDataParallel")
        self._broadcast_state()
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("DistributedDataParallel: the module has no parameter that requires a gradient")
        self.param_names = {id(p): n for n, p in named}
        self._params = [p for _, p in named]
        # With the noise scale on, the last bucket carries one spare element: the local squared
        # gradient norm rides along with the gradients and arrives averaged over ranks.
        buckets = build_buckets(
            [p for _, p in named],
            int(bucket_cap_mb * 2**20),
            int(min(first_bucket_mb, bucket_cap_mb) * 2**20),
            extra_last=1 if measure_noise_scale else 0,
        )
        self.buckets = buckets
        slot = {}
        for b in buckets:
            for i, p in enumerate(b.params):
                slot[id(p)] = (b, i)
        self._removers = []
        for _, p in named:
            bucket, i = slot[id(p)]
            self._removers.append(p.register_hook(self._make_binder(p, bucket.views[i])))
            self._removers.append(p.register_post_accumulate_grad_hook(self._make_hook(bucket, i)))

        executor = None
        if overlap and self.world_size > 1:
            executor = ThreadPoolExecutor(1, thread_name_prefix="ddp-comm")
            # The comm thread needs the GIL between MPI calls; by default the training thread
            # keeps it for up to 5 ms at a time, which delays every message by that much.
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._executor = executor
        self._futures = []
        self._next_launch = 0
        self._require_sync = True
        self._armed = False
        self._local_sq = 0.0
        self._closed = False
        self.steps = 0
        self.stats = SyncStats()
        self._hook: CommHook = allreduce_hook
        self._hook_state: Any = None
        self._hook_registered = False
        self._join: Join | None = None
        self._divisor: int | None = None  # inside join(): what this step's summed gradients are divided by

    # ------------------------------------------------------------------ set-up
    def _broadcast_state(self) -> None:
        """Make every replica start from rank 0's parameters and buffers."""
        for _, _, arr in self._state_arrays():
            self.comm.Bcast(arr, root=0)

    def _sync_buffers(self) -> None:
        """Broadcast rank 0's buffers as one message of their bytes (they are many, small and of two
        dtypes): one agreement exchange and one broadcast per forward instead of one of each per dtype."""
        arrays = [arr.reshape(-1).view(np.uint8) for _, _, arr in self._state_arrays(parameters=False)]
        if not arrays:
            return
        packed = np.concatenate(arrays)
        dist.broadcast(packed, 0, self.comm)  # with the agreement exchange: the watchdog covers it
        offset = 0
        for a in arrays:
            a[...] = packed[offset : offset + a.size]
            offset += a.size

    def _state_arrays(self, parameters: bool = True) -> Iterator[tuple[str, str, np.ndarray]]:
        """(kind, name, array) of the parameters (unless ``parameters=False``) and buffers."""
        if parameters:
            for name, p in self.module.named_parameters():
                yield "parameter", name, p.data
        named_buffers = getattr(self.module, "named_buffers", None)
        if named_buffers is not None:
            for name, b in named_buffers():
                arr = b.data if isinstance(b, Tensor) else b
                if isinstance(arr, np.ndarray) and arr.flags.c_contiguous:
                    yield "buffer", name, arr

    # ------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._armed:
            raise RuntimeError(
                "DistributedDataParallel: forward() called again before the previous backward() finished "
                "its gradient sync; call loss.backward() once per forward (or run forward under no_grad())"
            )
        sync_buffers = self.broadcast_buffers and self.world_size > 1 and self.module.training
        check = bool(self.check_every) and self._require_sync and self.steps % self.check_every == 0
        sync_grads = autograd.is_grad_enabled() and self._require_sync and self.world_size > 1
        if self._join is not None:  # tell the ranks that have run out of data what to shadow
            counts = self._join.exchange(np.array([1, sync_grads, sync_buffers, check], np.int64))
            self._join.active_steps += 1
            self._divisor = self._join.divisor(counts)
        if sync_buffers:
            self._sync_buffers()
        if check:
            self.check_replicas()
        if sync_grads:
            self._arm()
        return self.module(*args, **kwargs)

    def _arm(self) -> None:
        """Prepare for the coming backward: reset buckets, schedule the end-of-backward sync."""
        self._armed = True
        for b in self.buckets:
            b.reset()
        self._futures.clear()
        self._next_launch = 0
        self._local_sq = 0.0
        self.stats = SyncStats()
        autograd.queue_callback(self._finish)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Accumulate gradients locally (no communication) for gradient accumulation.

        The first forward/backward outside the block synchronises the accumulated sum.
        """
        prev = self._require_sync
        self._require_sync = False
        try:
            yield
        finally:
            self._require_sync = prev

    def register_comm_hook(self, state: Any, hook: CommHook) -> None:
        """Reduce each bucket with ``hook(state, bucket)`` instead of the default allreduce.

        See :mod:`minidl.distributed.hooks` for the contract. Register once, before the first
        backward, with the same hook on every rank.
        """
        if not callable(hook):
            raise TypeError(f"DistributedDataParallel.register_comm_hook: hook must be callable, got {hook!r}")
        if self._hook_registered:
            raise RuntimeError("DistributedDataParallel.register_comm_hook: a communication hook is already registered")
        if self.ranks_per_node is not None:
            raise RuntimeError(
                "DistributedDataParallel.register_comm_hook: ranks_per_node (hierarchical allreduce) applies to the "
                "default allreduce only; a hook reduces its buckets itself"
            )
        if self.steps or self._armed:
            raise RuntimeError(
                "DistributedDataParallel.register_comm_hook: register the hook before the first backward "
                f"({self.steps} step(s) already synchronised)"
            )
        self._hook, self._hook_state, self._hook_registered = hook, state, True

    # ------------------------------------------------------------------ uneven inputs
    def join(self, divide_by_initial_world_size: bool = False, optimizer: Any = None, enable: bool = True) -> Join:
        """A context manager for loops whose ranks have different numbers of batches (PyTorch's ``Join``).

        ``with ddp.join(optimizer=opt): for batch in my_shard: ...``: a rank that runs out of data
        shadows the others' collectives with zero gradients until every rank is done; each step's
        gradient is the mean over the ranks still active (``divide_by_initial_world_size=True``:
        over all ranks, PyTorch's default); at the end every rank copies the model (and
        ``optimizer``'s state) of the last rank to finish. See :mod:`minidl.distributed.join`.
        """
        return Join(self, divide_by_initial_world_size=divide_by_initial_world_size, optimizer=optimizer, enable=enable)

    def _enter_join(self, join: Join) -> None:
        if self._join is not None:
            raise RuntimeError("DistributedDataParallel.join: already inside a join() block")
        if self._hook_registered:
            raise RuntimeError(
                "DistributedDataParallel.join: a communication hook is registered; join shadows the default "
                "allreduce only"
            )
        self._join = join

    def _leave_join(self) -> None:
        self._join = None
        self._divisor = None

    def _shadow_step(self, counts: np.ndarray) -> None:
        """On a rank that has joined: take part in the collectives the active ranks announced, with zeros."""
        self._divisor = self._join.divisor(counts)
        if counts[SYNC_BUFFERS]:
            self._sync_buffers()
        if counts[CHECK_REPLICAS]:
            self.check_replicas(shadow=True)
        if counts[SYNC_GRADS]:
            self.stats = SyncStats()
            for b in self.buckets:  # the same buckets in the same order as the active ranks, holding zeros
                b.flat[...] = 0
                self._reduce(b)
            self.steps = self.steps + 1

    # ------------------------------------------------------------------ backward
    def _make_binder(self, p: Parameter, view: np.ndarray) -> Any:
        """A hook that runs before backward stores ``p``'s gradient: with no ``.grad`` yet (after
        ``zero_grad``), ``.grad`` becomes the zeroed bucket view, so the engine adds into it in place."""

        def bind_to_bucket(grad: Tensor) -> None:
            if p.grad is None and not self._closed:
                _point_grad_at(p, view)

        return bind_to_bucket

    def _make_hook(self, bucket: Bucket, i: int) -> Any:
        def on_gradient_ready(p: Parameter) -> None:
            if not self._armed:
                return
            if bucket.ready[i]:
                raise RuntimeError(
                    f"DistributedDataParallel: parameter {self.param_names[id(p)]} received its gradient twice "
                    "in one backward pass (reentrant backward is not supported)"
                )
            if p.grad.data is not bucket.views[i]:  # replaced by the engine (create_graph) or by the user
                _point_grad_at(p, bucket.views[i])
            bucket.ready[i] = True
            bucket.pending -= 1
            if bucket.pending == 0 and self.overlap:
                self._launch_ready()

        return on_gradient_ready

    def _launch_ready(self, inline: bool = False) -> None:
        """Start the ready buckets, strictly in index order so all ranks issue the same sequence.

        The last bucket is left to :meth:`_finish` (``inline``), which reduces it on the training
        thread once the comm thread is done: when it is ready every gradient is, so nothing is left
        to overlap it with, and handing it over would cost two thread wake-ups (slow when the cores
        are busy). With one bucket (a small model) the comm thread is not used at all.
        """
        last = len(self.buckets) - 1
        while self._next_launch <= last and self.buckets[self._next_launch].pending == 0:
            if self._next_launch == last and not inline and self._executor is not None:
                return
            self._launch(self.buckets[self._next_launch], inline)
            self._next_launch = self._next_launch + 1

    def _launch(self, bucket: Bucket, inline: bool = False) -> None:
        if self.measure_noise_scale:
            grads = self._grads(bucket)
            self._local_sq += float(np.vdot(grads, grads).real)
            if bucket is self.buckets[-1]:  # launched last: the local sum is complete
                bucket.flat[-1] = self._local_sq
        if self._executor is None or inline:
            self._reduce(bucket)
        else:
            self._futures.append(self._executor.submit(self._reduce, bucket))

    def _grads(self, bucket: Bucket) -> np.ndarray:
        """The gradients of ``bucket``: its flat buffer without the noise scale's spare element."""
        if self.measure_noise_scale and bucket is self.buckets[-1]:
            return bucket.flat[: bucket.flat.size - 1]
        return bucket.flat

    def _reduce(self, bucket: Bucket) -> None:
        """Average one bucket across ranks (runs on the comm thread when overlapping)."""
        start = time.perf_counter()
        # The cross-rank agreement exchange costs a small message: the first step checks every bucket
        # (proving the buckets agree); later steps the first bucket only, where the watchdog of
        # collectives notices a rank that never arrives (the others raise instead of waiting for ever).
        check = self.steps == 0 or bucket.index == 0
        if not self._hook_registered:  # the default: one allreduce, the noise scale's spare element included
            # Inside join() with ranks missing: the sum, divided by the ranks still active.
            divisor = self._divisor if self._divisor not in (None, self.world_size) else None
            dist.all_reduce(
                bucket.flat, "avg" if divisor is None else "sum", self.algorithm, self.comm,
                link=self.link, check=check, ranks_per_node=self.ranks_per_node,
            )  # fmt: skip
            if divisor is not None:
                bucket.flat /= divisor
            wire = bucket.nbytes
        else:
            wire = self._run_hook(bucket, check)
        end = time.perf_counter()
        s = self.stats
        s.comm_seconds += end - start
        s.messages += 1
        s.bytes += bucket.nbytes
        s.wire_bytes += wire
        s.intervals.append((bucket.index, start, end))

    def _run_hook(self, bucket: Bucket, check: bool) -> int:
        """Hand the bucket's gradients to the registered hook; returns the bytes it reports sending."""
        buffer = self._grads(bucket)
        last = bucket is self.buckets[-1]
        grad_bucket = GradBucket(
            bucket.index, buffer, bucket.params, bucket.views, last, self.steps,
            self.comm, self.algorithm, self.link, check, wire_bytes=buffer.nbytes,
        )  # fmt: skip
        result = self._hook(self._hook_state, grad_bucket)
        if result is not None and result is not buffer:
            result = np.asarray(result)
            if result.shape != buffer.shape:
                raise ValueError(
                    f"DistributedDataParallel: the communication hook returned shape {result.shape} for bucket "
                    f"{bucket.index}, expected {buffer.shape}"
                )
            np.copyto(buffer, result)
        if last and buffer.size < bucket.flat.size:  # the noise scale's local norm: not the hook's to compress
            dist.all_reduce(bucket.flat[-1:], "avg", self.algorithm, self.comm, link=self.link, check=False)
        return int(grad_bucket.wire_bytes)

    def _finish(self) -> None:
        """End of backward: reduce what is left, wait for everything, expose the wait time."""
        if not self._armed:
            return
        start = time.perf_counter()
        try:
            for b in self.buckets:
                if b.pending:  # parameters that got no gradient this step contribute what they hold: zero
                    for i, p in enumerate(b.params):  # after zero_grad, or what no_sync accumulated
                        if not b.ready[i]:
                            _point_grad_at(p, b.views[i])
                            b.ready[i] = True
                    b.pending = 0
            for f in self._futures:
                f.result()  # re-raises a communication error here, in the training thread
            self._launch_ready(inline=True)  # after the comm thread's buckets: the order is the same on every rank
            if self.measure_noise_scale:
                self._norms()
        finally:
            self._futures.clear()
            self._armed = False
        self.stats.exposed_seconds = time.perf_counter() - start
        self.steps = self.steps + 1

    def _norms(self) -> None:
        """Squared norms for the noise scale: the global one here, the local mean from the spare slot."""
        total = 0.0
        for b in self.buckets:
            grads = self._grads(b)
            total += float(np.vdot(grads, grads).real)
        self.stats.local_sq_norm = float(self.buckets[-1].flat[-1].real)  # already divided by the rank count
        self.stats.global_sq_norm = total

    # ------------------------------------------------------------------ consistency
    def first_nonfinite_gradient(self) -> str | None:
        """The first parameter (registration order) whose gradient holds NaN or Inf, or None.

        After a synchronised backward every rank holds the same averaged gradients (a NaN or Inf on
        any rank reaches all of them), so every rank gives the same answer without a message.
        """
        if self.measure_noise_scale and math.isfinite(self.stats.global_sq_norm):
            return None  # the squared norm of every gradient, already computed this step
        grads = ((self.param_names[id(p)], None if p.grad is None else p.grad.data) for p in self._params)
        return first_nonfinite(grads)

    def check_replicas(self, shadow: bool = False) -> None:
        """Raise on every rank if any parameter differs bitwise between ranks.

        ``shadow``: this rank has joined (its model is known to be behind) and contributes
        values that neither the max nor the min can pick.
        """
        names, sums = [], []
        for _, name, arr in self._state_arrays():
            names.append(name)
            sums.append(checksum(arr))
        local = np.array(sums, dtype=np.uint64)
        high, low = local.copy(), local.copy()
        if shadow:
            high[...], low[...] = 0, np.iinfo(np.uint64).max
        dist.all_reduce(high, "max", comm=self.comm)
        dist.all_reduce(low, "min", comm=self.comm)
        differ = np.nonzero(high != low)[0]
        if differ.size:
            raise RuntimeError(
                f"DistributedDataParallel: replicas have diverged at step {self.steps}: "
                f"{names[differ[0]]!r} differs between ranks ({differ.size} tensors differ in all)"
            )

    # ------------------------------------------------------------------ module plumbing
    def state_dict(self) -> dict[str, np.ndarray]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return self.module.load_state_dict(state, *args, **kwargs)

    def close(self) -> None:
        """Stop the communication thread, unhook the parameters and free the private communicator."""
        self._closed = True
        for remove in self._removers:
            with contextlib.suppress(ValueError):
                remove()
        self._removers = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with contextlib.suppress(Exception):
            self.comm.Free()

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{b.nbytes / 2**20:.2f}" for b in self.buckets)
        nodes = "" if self.ranks_per_node is None else f", ranks_per_node={self.ranks_per_node!r}"
        return (
            f"ranks={self.world_size}, algorithm={self.algorithm!r}{nodes}, overlap={self.overlap}, "
            f"buckets=[{sizes}] MiB"
        )


def _point_grad_at(p: Parameter, view: np.ndarray) -> None:
    """Make ``p.grad`` the bucket view ``view``, holding what ``p.grad`` held (zero if None)."""
    if p.grad is None:
        view[...] = 0
    elif p.grad.data is view:
        return
    else:
        np.copyto(view, p.grad.data)
    p.grad = Tensor._make(view)
