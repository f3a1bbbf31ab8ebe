"""bfloat16 without hardware or numpy support: the top 16 bits of a float32, carried as uint16.

bfloat16 keeps float32's 8-bit exponent (so its range: no overflow where float32 has none) and
7 of its 23 mantissa bits. Encoding rounds to nearest, ties to even, as hardware converters do:
add 0x7FFF plus the lowest kept bit, then drop the low 16 bits (the carry rounds up into the
exponent, which is right: the largest finite values round to inf). NaNs are kept NaN (quiet)
rather than rounded, which could carry them into inf. Decoding is exact: shift back up.

:data:`BF16_SUM` is a reduction op for the hand-written allreduces: a plain integer sum of bit
patterns would be meaningless, so each reduction step decodes both operands, adds them in
float32 and rounds the partial sum back to bfloat16. Every hop of the allreduce therefore moves
2 bytes per element, and each partial sum is rounded once (as NCCL's bfloat16 reduction does).
"""

from __future__ import annotations

import numpy as np

from collectives import ReduceOp

QUIET_NAN_BIT = np.uint16(0x0040)


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """``x`` (float32) rounded to bfloat16, ties to even: the uint16 bit patterns."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    rounded = (bits >> 16) & 1
    rounded += 0x7FFF
    rounded += bits  # wraps only for NaNs with every low bit set: they are replaced below
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = (bits[nan] >> 16).astype(np.uint16) | QUIET_NAN_BIT
    return out


def from_bfloat16(h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The float32 values of bfloat16 bit patterns ``h`` (exact), into ``out`` if given."""
    wide = np.left_shift(h.astype(np.uint32), 16)
    if out is None:
        return wide.view(np.float32)
    out[...] = wide.view(np.float32)
    return out


class _Bf16Add:
    """``out = bf16(float32(a) + float32(b))`` on bit patterns, called as a ufunc is: ``(a, b, out)``."""

    __name__ = "bf16_add"

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        total = from_bfloat16(a) + from_bfloat16(b)
        result = to_bfloat16(total)
        if out is None:
            return result
        out[...] = result
        return out


BF16_SUM = ReduceOp("bf16_sum", _Bf16Add())  # type: ignore[arg-type]  # a ufunc-shaped callable
