"""Uneven inputs: ranks that run out of batches shadow the collectives of the others until all are done.

PyTorch's ``torch.distributed.algorithms.Join`` for :class:`DistributedDataParallel`. Without it
a rank with fewer batches leaves the loop while the others wait in their next gradient allreduce
for ever (here: until the watchdog names it). Inside ``with ddp.join():`` every forward of a
rank that still has data starts with one tiny allreduce, the *join exchange*, of four counters:
ranks still active, and how many of them will synchronise gradients, broadcast buffers and
compare replicas in this step. A rank that has left the loop waits in ``__exit__`` and answers
each exchange with zeros; whenever the others are still active it takes part in exactly the
collectives they announced, contributing zero gradients, until an exchange says nobody is left.

Averaging: each gradient allreduce is divided by the number of ranks active in that step, so the
step's gradient is the mean over the batches that exist (the semantics chosen here; a rank that
has joined adds zeros and is not counted). ``divide_by_initial_world_size=True`` divides by the
world size instead, as PyTorch does by default: steps with fewer ranks then count less.

A joined rank does not step its optimizer, so its parameters fall behind; at the end, as PyTorch
does, every rank copies the model (parameters and buffers) of the last rank to join (the one with
the most steps, the lowest such rank on a tie), and with ``optimizer=`` that rank's optimizer
state too, so the replicas leave the block identical. While shadowing, a joined rank takes part
in the replica check with neutral values (it is known to be behind).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from minidl.distributed import comm as dist

if TYPE_CHECKING:
    from minidl.distributed.ddp import DistributedDataParallel

# The join exchange's counters, summed over ranks
ACTIVE, SYNC_GRADS, SYNC_BUFFERS, CHECK_REPLICAS = range(4)


class Join:
    """The context manager ``DistributedDataParallel.join()`` returns (see the module docstring).

    ``enable=False`` makes it do nothing (the loop must then be even, as without it).
    """

    def __init__(
        self,
        ddp: DistributedDataParallel,
        *,
        divide_by_initial_world_size: bool = False,
        optimizer: Any = None,
        enable: bool = True,
    ) -> None:
        self.ddp = ddp
        self.divide_by_initial_world_size = divide_by_initial_world_size
        self.optimizer = optimizer
        self.enable = enable and ddp.world_size > 1
        self.active_steps = 0  # exchanges this rank took part in while it still had data

    def __enter__(self) -> Join:
        if self.enable:
            self.ddp._enter_join(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self.enable:
            return
        try:
            if kind is None:  # after an error the others cannot be shadowed: let the error end the job
                while (counts := self.exchange(np.zeros(4, np.int64)))[ACTIVE] > 0:
                    self.ddp._shadow_step(counts)
                self._sync_final_state()
        finally:
            self.ddp._leave_join()

    def exchange(self, mine: np.ndarray) -> np.ndarray:
        """The per-step allreduce of the counters (under the watchdog: a missing rank is named, not waited for)."""
        return dist.all_reduce(mine, "sum", comm=self.ddp.comm)

    def divisor(self, counts: np.ndarray) -> int:
        """What this step's summed gradients are divided by."""
        return self.ddp.world_size if self.divide_by_initial_world_size else int(counts[ACTIVE])

    def _sync_final_state(self) -> None:
        """Every rank copies the model (and optimizer state) of the last rank to join."""
        ddp = self.ddp
        p, rank = ddp.world_size, ddp.rank
        key = np.array([self.active_steps * p + (p - 1 - rank)], np.int64)  # most steps, then lowest rank
        dist.all_reduce(key, "max", comm=ddp.comm)
        root = p - 1 - int(key[0]) % p
        for _, _, arr in ddp._state_arrays():
            ddp.comm.Bcast(arr, root=root)
        if self.optimizer is not None:  # once per join, so a pickled broadcast is fine
            state = ddp.comm.bcast(self.optimizer.state_dict() if rank == root else None, root=root)
            if rank != root:
                self.optimizer.load_state_dict(state)
