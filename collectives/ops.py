"""Reduction operators: what a collective combines elementwise, and how."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReduceOp:
    """An elementwise, associative and commutative reduction backed by a numpy ufunc."""

    name: str
    ufunc: np.ufunc

    def reduce(self, inout: np.ndarray, incoming: np.ndarray) -> None:
        """``inout = inout (op) incoming``, in place, without allocating."""
        self.ufunc(inout, incoming, out=inout)

    def reference(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The result a collective must produce, computed directly (for tests)."""
        return self.ufunc.reduce(np.stack(arrays), axis=0)


SUM = ReduceOp("sum", np.add)
PROD = ReduceOp("prod", np.multiply)
MAX = ReduceOp("max", np.maximum)
MIN = ReduceOp("min", np.minimum)

OPS: dict[str, ReduceOp] = {op.name: op for op in (SUM, PROD, MAX, MIN)}


def get_op(op: str | ReduceOp) -> ReduceOp:
    """Look up an operator by name; the error lists the valid names."""
    if isinstance(op, ReduceOp):
        return op
    try:
        return OPS[op]
    except (KeyError, TypeError):
        raise ValueError(f"unknown reduction op {op!r}; expected one of {sorted(OPS)}") from None
