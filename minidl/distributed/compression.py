"""Half-precision communication hooks: the bucket crosses the wire in 16 bits, half of float32's bytes.

``fp16_compress_hook`` is PyTorch's: divide by the number of ranks first (float16 tops out at
65504, and a sum of p gradients can pass it where their average would not), cast to float16,
allreduce with op "sum" in float16 (every partial sum rounded to float16), cast back.

``bf16_compress_hook`` rounds to bfloat16 (:mod:`minidl.distributed.bfloat16`: numpy has no
such dtype, so it travels as uint16 bit patterns). A sum of bit patterns is meaningless, so the
choice was between an allgather of every rank's compressed bucket (summed locally in float32)
and an allreduce whose reduction decodes, adds in float32 and re-rounds at every step. The
allreduce is taken: it moves 2(p-1)/p x 2 bytes per element per rank on the ring, where the
allgather moves (p-1) x 2, which is more than the uncompressed allreduce from p = 3 on. The price
is one rounding per partial sum instead of one at the end. bfloat16 has float32's range, so there
is no overflow to pre-divide against: the sum is divided by p after decoding, in float32.

Both report ``wire_bytes`` = 2 bytes per element (the payload, as ``nbytes`` is for the plain
allreduce), half of float32's, a quarter of float64's. Neither keeps an error-feedback residual
(PyTorch's do not either): the rounding error is relative, about 2**-11 (fp16) or 2**-8 (bf16)
of each value, and unbiased on average.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.distributed.bfloat16 import BF16_SUM, from_bfloat16, to_bfloat16
from minidl.distributed.hooks import GradBucket


def fp16_compress_hook(state: Any, bucket: GradBucket) -> np.ndarray:
    """Average the bucket in float16: divide by p, cast, allreduce-sum in float16, cast back."""
    p = bucket.comm.Get_size()
    half = np.divide(bucket.buffer, p).astype(np.float16)
    bucket.all_reduce(half, "sum")
    bucket.wire_bytes = half.nbytes
    return half  # DDP copies it into the bucket, converting to the bucket's dtype


def bf16_compress_hook(state: Any, bucket: GradBucket) -> np.ndarray:
    """Average the bucket in bfloat16: round, allreduce with a decode-add-round sum, decode, divide by p."""
    p = bucket.comm.Get_size()
    carrier = to_bfloat16(bucket.buffer)
    bucket.all_reduce(carrier, BF16_SUM)
    bucket.wire_bytes = carrier.nbytes
    total = from_bfloat16(carrier)
    total /= np.float32(p)
    return total
