"""Grad mode: whether new operations are recorded for backward (``no_grad``, ``enable_grad``).

The mode is per thread, as in PyTorch: a helper thread that runs under ``no_grad`` (a data-parallel
communication thread, a data loader) must not stop the main thread from recording its graph.
This module depends on nothing, so the tensor, the engine and the ops can all read the mode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _Mode(threading.local):
    enabled = True  # record new operations for backward


# The engine reads and sets ``state.enabled`` directly: it is on the hot path of every op.
state = _Mode()


def is_grad_enabled() -> bool:
    """Whether new operations are recorded for backward."""
    return state.enabled


class set_grad_enabled:
    """Context manager (or decorator) that turns graph recording on or off, like ``torch.set_grad_enabled``."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self.prev = state.enabled

    def __enter__(self) -> None:
        self.prev = state.enabled
        state.enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        state.enabled = self.prev

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        wanted = self.mode

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(wanted):
                return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = getattr(fn, "__doc__", None)
        return wrapper


class _FixedMode(set_grad_enabled):
    """``set_grad_enabled`` with a fixed mode; usable as ``with m():``, ``@m()`` and ``@m``."""

    MODE = True

    def __new__(cls, fn: Callable[..., Any] | None = None) -> Any:
        self = super().__new__(cls)
        if fn is not None:  # used as a bare decorator: return the wrapped function
            set_grad_enabled.__init__(self, cls.MODE)
            return self(fn)
        return self

    def __init__(self, fn: Callable[..., Any] | None = None) -> None:
        super().__init__(self.MODE)


class no_grad(_FixedMode):
    """Context manager (or decorator) under which no graph is recorded (inference, optimizer updates)."""

    MODE = False


class enable_grad(_FixedMode):
    """Context manager (or decorator) that re-enables recording inside ``no_grad``."""

    MODE = True
