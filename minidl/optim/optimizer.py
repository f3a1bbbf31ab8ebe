"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and ``state_dict``.

The layout of ``state_dict()`` is PyTorch's: ``{"state": {index: {name: value}}, "param_groups":
[{hyperparameters..., "params": [index, ...]}]}``, where indices number the parameters in group
order. Arrays are copies, so a saved state does not change as training goes on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from minidl.grad_mode import enable_grad
from minidl.tensor import Tensor


class Optimizer:
    """Base class: subclasses define ``defaults`` (via ``__init__``) and ``_update(group, p, grad, state)``."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors or of dicts, got a single Tensor "
                "(wrap it in a list)"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        for group in params if isinstance(params[0], dict) else [{"params": params}]:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones take the defaults)."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"{type(self).__name__}: a parameter group must be a dict with a 'params' entry")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        unknown = sorted(set(param_group) - set(self.defaults) - {"params", "initial_lr"})
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown hyperparameter(s) {unknown} in a parameter group; "
                f"known: {sorted(self.defaults)}"
            )
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: parameters must be Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: cannot optimize a non-leaf tensor (shape {p.shape})")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(f"{type(self).__name__}: some parameters appear more than once in the parameter groups")
        group = {**self.defaults, **param_group, "params": params}
        self._check_group(group)
        self.param_groups.append(group)

    # hyperparameters every group must have >= 0; a subclass lists its own (betas are checked when present)
    non_negative: tuple[str, ...] = ("lr",)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate a group's hyperparameters (subclasses extend it with rules that relate several)."""
        name = type(self).__name__
        for key in self.non_negative:
            if group[key] < 0:
                label = "learning rate (lr)" if key == "lr" else key
                raise ValueError(f"{name}: {label} must be >= 0, got {group[key]}")
        if "betas" in group:
            betas = group["betas"]
            if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
                raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")

    def _params(self) -> Iterator[Tensor]:
        for g in self.param_groups:
            yield from g["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._group_step(group)
        return loss

    def _group_step(self, group: dict[str, Any]) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = p.grad.data
            if grad.shape != p.shape:
                raise RuntimeError(f"{type(self).__name__}: gradient shape {grad.shape} != parameter shape {p.shape}")
            self._update(group, p, grad, self.state.setdefault(id(p), {}))

    def _update(self, group: dict[str, Any], p: Tensor, grad: np.ndarray, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {
            index[pid]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for pid, s in self.state.items()
            if pid in index and s
        }
        groups = []
        for g in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            saved["params"] = [index[id(p)] for p in g["params"]]
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state saved by ``state_dict``.

        The optimizer must have been built over parameters of the same shapes in the same
        groups; anything else is an error naming the first mismatch, and nothing is changed.
        """
        name = type(self).__name__
        saved_groups = state_dict.get("param_groups")
        if not isinstance(saved_groups, list) or "state" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the saved state has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        params = list(self._params())
        for gi, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {gi} has {len(g['params'])} parameters, "
                    f"the saved group {len(sg['params'])}"
                )
        new_state: dict[int, dict[str, Any]] = {}
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        order = [i for sg in saved_groups for i in sg["params"]]
        for pos, saved_index in enumerate(order):
            if saved_index not in saved_state:
                continue
            p = params[pos]
            entry = {}
            for k, v in saved_state[saved_index].items():
                if isinstance(v, np.ndarray) and v.ndim > 0:
                    if v.shape != p.shape:
                        raise ValueError(
                            f"{name}.load_state_dict: state {k!r} of parameter {pos} has shape {v.shape}, "
                            f"the parameter has shape {p.shape}"
                        )
                    v = v.astype(p.dtype, copy=True)
                elif isinstance(v, np.ndarray):
                    v = v.item()
                entry[k] = v
            new_state[id(p)] = entry
        for g, sg in zip(self.param_groups, saved_groups):
            for k, v in sg.items():
                if k == "params":
                    continue
                # lists come back from a checkpoint file where tuples went in (betas)
                g[k] = tuple(v) if isinstance(self.defaults.get(k), tuple) and isinstance(v, list) else v
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


def adam_moments(state: dict[str, Any], like: np.ndarray, amsgrad: bool = False) -> int:
    """Count a step of an Adam-family optimizer (Adam, AdamW, LAMB) and return its number t (from 1).

    Creates the first and second moment buffers (``exp_avg``, ``exp_avg_sq``, PyTorch's names)
    on the first step, and AMSGrad's running maximum ``max_exp_avg_sq`` whenever it is asked
    for and missing (a group may switch amsgrad on mid-training). The numpy references and the
    numba kernels both read the state this sets up.
    """
    if not state:
        state["step"] = 0
        state["exp_avg"] = np.zeros_like(like)
        state["exp_avg_sq"] = np.zeros_like(like)
    if amsgrad and "max_exp_avg_sq" not in state:
        state["max_exp_avg_sq"] = np.zeros_like(like)
    state["step"] += 1
    return state["step"]


def update_moments(m: np.ndarray, v: np.ndarray, grad: np.ndarray, b1: float, b2: float) -> None:
    """Adam's moment updates in place: ``m = b1 m + (1-b1) g`` (as PyTorch's lerp), ``v = b2 v + (1-b2) g^2``."""
    m += (1 - b1) * (grad - m)
    v *= b2
    v += (1 - b2) * grad * grad


def excluded_from_adaptation(p: Tensor) -> bool:
    """Biases and normalisation parameters (1-D or scalar): LARS and LAMB leave them unadapted."""
    return p.ndim <= 1
