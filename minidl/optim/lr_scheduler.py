"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s names and arguments.

Every schedule here is a closed form ``lr(t, base_lr)`` of the step count ``t`` (``last_epoch``)
and each group's base rate (the optimizer's ``lr`` when the scheduler was built, kept as the
group's ``initial_lr``). A closed form makes resuming exact: the state is just ``last_epoch``,
and composition never accumulates rounding. Values agree with PyTorch's schedulers (which
compute most of them recursively) up to floating-point rounding.

Call ``scheduler.step()`` once per step (or per epoch: a schedule counts whatever you step).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

from minidl.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses define ``_lr_at(t, base_lr)``."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(
                    f"{type(self).__name__}: param group {i} has no 'initial_lr'; pass last_epoch=-1 "
                    "or restore the optimizer's state first"
                )
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[float] = []
        self.step()

    def _lr_at(self, t: int, base_lr: float) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """The learning rates for the current ``last_epoch``."""
        return [self._lr_at(self.last_epoch, base) for base in self.base_lrs]

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set, one per parameter group."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one step and set every group's ``lr``."""
        self.last_epoch += 1
        self._apply(self.get_lr())

    def _apply(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (and functions, which cannot be saved)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer" and not callable(v)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a saved state; the optimizer's learning rates are set to match it."""
        unknown = set(state_dict) - set(self.state_dict())
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unknown keys {sorted(unknown)}")
        self.__dict__.update(state_dict)
        self.last_epoch = int(self.last_epoch)
        self.base_lrs = [float(b) for b in self.base_lrs]
        self._apply(self.get_lr())


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(t)`` (one function, or one per group). The functions are not saved."""

    def __init__(
        self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]], last_epoch=-1
    ) -> None:
        n = len(optimizer.param_groups)
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n:
            raise ValueError(f"LambdaLR: {len(fns)} functions for {n} parameter groups")
        self._fns = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self._fns)]

    def _lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self._fns[0](t)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "_fns"}


class LinearLR(LRScheduler):
    """Multiplies the base rate by a factor that moves linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` steps, then stays there."""

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(
                f"LinearLR: need 0 < start_factor <= 1 and 0 <= end_factor <= 1, got {start_factor}, {end_factor}"
            )
        if total_iters < 1:
            raise ValueError(f"LinearLR: total_iters must be >= 1, got {total_iters}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t: int, base_lr: float) -> float:
        frac = min(t, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class LinearWarmup(LinearLR):
    """Gradual warmup (Goyal et al. 2017): ramp linearly from ``start_factor * lr`` to ``lr`` over
    ``warmup_steps`` steps.

    For the paper's recipe with k times the reference batch, build the optimizer with the scaled
    rate ``lr = linear_scaling_rule(base_lr, global_batch, base_batch)`` (k * base_lr) and use
    ``start_factor = 1 / k``: training starts at ``base_lr`` and reaches ``k * base_lr`` when
    the warmup ends (the paper warms up over the first 5 epochs).
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float, last_epoch: int = -1) -> None:
        super().__init__(optimizer, start_factor, 1.0, warmup_steps, last_epoch)


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (t // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= t)``."""

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1, last_epoch=-1) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** t``."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self.gamma**t


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2`` (Loshchilov and Hutter 2017,
    without restarts); past ``T_max`` it follows the cosine back up, as PyTorch's does."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t: int, base_lr: float) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class SequentialLR(LRScheduler):
    """Runs ``schedulers[i]`` from ``milestones[i-1]`` on, each restarting its own count at 0.

    E.g. warmup then cosine: ``SequentialLR(opt, [LinearWarmup(opt, w, f), CosineAnnealingLR(opt,
    T - w)], milestones=[w])``. All schedulers must drive the same optimizer.
    """

    def __init__(
        self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int], last_epoch: int = -1
    ) -> None:
        if len(schedulers) < 1 or len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR: need one milestone fewer than schedulers, got {len(schedulers)} schedulers "
                f"and {len(milestones)} milestones"
            )
        if list(milestones) != sorted(milestones):
            raise ValueError(f"SequentialLR: milestones must be increasing, got {list(milestones)}")
        for s in schedulers:
            if s.optimizer is not optimizer:
                raise ValueError("SequentialLR: every scheduler must use the optimizer given to SequentialLR")
        self._schedulers = list(schedulers)
        self.milestones = [int(m) for m in milestones]
        for group in optimizer.param_groups:  # undo the children's initial steps
            group["lr"] = group.get("initial_lr", group["lr"])
        super().__init__(optimizer, last_epoch)

    def _child_at(self, t: int) -> tuple[LRScheduler, int]:
        i = bisect.bisect_right(self.milestones, t)
        return self._schedulers[i], t - (self.milestones[i - 1] if i else 0)

    def _lr_at(self, t: int, base_lr: float) -> float:
        child, local = self._child_at(t)
        return child._lr_at(local, base_lr)

    def step(self) -> None:
        super().step()
        child, local = self._child_at(self.last_epoch)
        child.last_epoch = local
        child._last_lr = self.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in LRScheduler.state_dict(self).items() if k != "_schedulers"}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        children = state.pop("_schedulers", None)
        if children is None or len(children) != len(self._schedulers):
            raise ValueError(f"SequentialLR.load_state_dict: expected states for {len(self._schedulers)} schedulers")
        for s, sd in zip(self._schedulers, children):
            s.__dict__.update(sd)  # the children's own lr side effects are overwritten below
        state["_schedulers"] = self._schedulers
        LRScheduler.load_state_dict(self, state)


class ChainedScheduler(LRScheduler):
    """Multiplies the schedules' factors: ``lr = base_lr * prod(s.lr(t) / base_lr)``.

    Meant for multiplicative schedules (LinearLR, StepLR, MultiStepLR, ExponentialLR,
    CosineAnnealingLR with ``eta_min=0``), e.g. a warmup running under a step decay.
    """

    def __init__(self, schedulers: Sequence[LRScheduler]) -> None:
        if not schedulers:
            raise ValueError("ChainedScheduler: needs at least one scheduler")
        optimizer = schedulers[0].optimizer
        if any(s.optimizer is not optimizer for s in schedulers):
            raise ValueError("ChainedScheduler: every scheduler must use the same optimizer")
        self._schedulers = list(schedulers)
        for group in optimizer.param_groups:
            group["lr"] = group.get("initial_lr", group["lr"])
        super().__init__(optimizer, -1)

    def _lr_at(self, t: int, base_lr: float) -> float:
        lr = base_lr
        for s in self._schedulers:
            lr *= s._lr_at(t, base_lr) / base_lr if base_lr else 0.0
        return lr

    def step(self) -> None:
        super().step()
        for s in self._schedulers:
            s.last_epoch = self.last_epoch

    state_dict = SequentialLR.state_dict
    load_state_dict = SequentialLR.load_state_dict


def linear_scaling_rule(base_lr: float, global_batch: int, base_batch: int = 256) -> float:
    """The learning rate for ``global_batch`` given one tuned for ``base_batch`` (Goyal et al. 2017):
    ``base_lr * global_batch / base_batch``."""
    if global_batch < 1 or base_batch < 1:
        raise ValueError(f"linear_scaling_rule: batch sizes must be >= 1, got {global_batch} and {base_batch}")
    return base_lr * global_batch / base_batch


def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, start_factor: float = 0.1, eta_min: float = 0.0
) -> SequentialLR:
    """Linear warmup for ``warmup_steps`` then cosine decay to ``eta_min`` at ``total_steps``."""
    if not 0 < warmup_steps < total_steps:
        raise ValueError(f"warmup_cosine: need 0 < warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
    warm = LinearWarmup(optimizer, warmup_steps, start_factor)
    cos = CosineAnnealingLR(optimizer, total_steps - warmup_steps, eta_min)
    return SequentialLR(optimizer, [warm, cos], milestones=[warmup_steps])
