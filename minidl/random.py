"""The one random number generator behind initialisation, dropout, augmentation and shuffling defaults.

``manual_seed`` reseeds it (like ``torch.manual_seed``); ``get_rng_state``/``set_rng_state``
capture and restore it exactly, as plain JSON-able data, so a checkpoint can resume the same
random stream without pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed minidl's global generator and return it."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """The global generator, for code that needs random numbers (look it up at each use: reseeding replaces it)."""
    return _generator


def get_rng_state() -> dict[str, Any]:
    """The global generator's exact state as a dict of strings and ints (no numpy objects)."""
    return _plain(_generator.bit_generator.state)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state from ``get_rng_state`` (the generator continues exactly where it was)."""
    global _generator
    if not isinstance(state, dict) or "bit_generator" not in state:
        raise ValueError("set_rng_state: expected a dict returned by get_rng_state()")
    name = state["bit_generator"]
    bit_gen_cls = getattr(np.random, str(name), None)
    if bit_gen_cls is None or not isinstance(bit_gen_cls, type) or not issubclass(bit_gen_cls, np.random.BitGenerator):
        raise ValueError(f"set_rng_state: unknown bit generator {name!r}")
    bit_gen = bit_gen_cls()
    try:
        bit_gen.state = state
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"set_rng_state: the saved {name} state is invalid: {e}") from None
    _generator = np.random.Generator(bit_gen)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    return value
