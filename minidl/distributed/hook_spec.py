"""Communication hooks by name: ``"powersgd:rank=2"``, ``"topk:ratio=0.01"``, ``"fp16"``, ``"bf16"``, ``"none"``.

One table (:data:`HOOKS`) says which hooks exist, which keys each takes and their defaults; the
trainer's ``--comm-hook`` and the study's read it, so a mistake is one message listing what is
valid, before anything runs. :func:`make_comm_hook` turns a spec into the ``(state, hook)`` pair
``DistributedDataParallel.register_comm_hook`` takes (``None`` for "none": the default allreduce).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minidl.distributed.compression import bf16_compress_hook, fp16_compress_hook
from minidl.distributed.hooks import CommHook
from minidl.distributed.powersgd import PowerSGDState, powersgd_hook
from minidl.distributed.topk import TopKState, topk_hook


@dataclass(frozen=True)
class HookKind:
    """A hook the trainer can name: what it does, its keys (name -> type, default), how to build it."""

    summary: str
    keys: dict[str, tuple[type, Any]]
    build: Callable[[dict[str, Any]], tuple[Any, CommHook]]


HOOKS: dict[str, HookKind] = {
    "none": HookKind("the default allreduce of the full-precision gradients", {}, lambda kw: (None, None)),
    "fp16": HookKind("float16 on the wire (divided by p first)", {}, lambda kw: (None, fp16_compress_hook)),
    "bf16": HookKind("bfloat16 on the wire (float32's range)", {}, lambda kw: (None, bf16_compress_hook)),
    "powersgd": HookKind(
        "rank-r PowerSGD with error feedback and warm start",
        {"rank": (int, 1), "start_iter": (int, 0), "min_rate": (float, 2.0), "seed": (int, 0)},
        lambda kw: (
            PowerSGDState(kw["rank"], kw["start_iter"], kw["min_rate"], seed=kw["seed"]),
            powersgd_hook,
        ),
    ),
    "topk": HookKind(
        "the largest ratio x n entries of each bucket, with error feedback",
        {"ratio": (float, 0.01)},
        lambda kw: (TopKState(kw["ratio"]), topk_hook),
    ),
}


def hook_names() -> str:
    """The valid hooks and their keys with defaults, for messages and ``--help``."""
    parts = []
    for name, kind in HOOKS.items():
        keys = ",".join(f"{k}={default}" for k, (_, default) in kind.keys.items())
        parts.append(f"{name}:{keys}" if keys else name)
    return ", ".join(parts)


def parse_comm_hook(spec: str) -> tuple[str, dict[str, Any]]:
    """``"powersgd:rank=2"`` -> ``("powersgd", {"rank": 2, ...defaults})``; ValueError naming what is wrong."""
    name, _, rest = str(spec).strip().partition(":")
    name = name.strip().lower()
    kind = HOOKS.get(name)
    if kind is None:
        raise ValueError(f"--comm-hook: unknown hook {name!r}; expected one of {hook_names()}")
    values = {k: default for k, (_, default) in kind.keys.items()}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, text = item.partition("=")
        key = key.strip()
        if key not in kind.keys:
            valid = ", ".join(kind.keys) or "none"
            raise ValueError(f"--comm-hook {spec}: {name} has no key {key!r}; its keys: {valid}")
        if not eq:
            raise ValueError(f"--comm-hook {spec}: {key} needs a value ({key}=...)")
        kind_type = kind.keys[key][0]
        try:
            values[key] = kind_type(text.strip())
        except ValueError:
            raise ValueError(
                f"--comm-hook {spec}: {key} must be {'an integer' if kind_type is int else 'a number'}, got {text!r}"
            ) from None
    try:
        kind.build(values)  # the states check their own values (ranges); fail here, before any run
    except ValueError as e:
        raise ValueError(f"--comm-hook {spec}: {e}") from None
    return name, values


def make_comm_hook(spec: str) -> tuple[Any, CommHook | None]:
    """A fresh ``(state, hook)`` for ``spec``; the hook is None for "none" (keep DDP's default)."""
    name, values = parse_comm_hook(spec)
    return HOOKS[name].build(values)


def format_comm_hook(name: str, values: dict[str, Any]) -> str:
    """The canonical spelling of a parsed spec, every key shown: ``powersgd:rank=2,start_iter=0,...``."""
    keys = ",".join(f"{k}={v}" for k, v in values.items())
    return f"{name}:{keys}" if keys else name
