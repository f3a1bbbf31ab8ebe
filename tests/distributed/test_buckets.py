import numpy as np
import pytest

from minidl.distributed import plan_buckets

F32 = np.dtype(np.float32)


def test_reverse_order_small_first_bucket_and_caps():
    sizes = [400, 40, 400, 40, 4000, 40]  # bytes, in registration order
    plan = plan_buckets(sizes, [F32] * 6, cap_bytes=800, first_cap_bytes=100)
    assert plan == [[5], [4], [3, 2, 1], [0]]  # 4000 B exceeds the cap: a bucket of its own
    assert sorted(i for b in plan for i in b) == list(range(6))


def test_dtype_change_closes_bucket():
    plan = plan_buckets([8, 8, 8], [F32, np.dtype(np.float64), np.dtype(np.float64)], 10**6, 10**6)
    assert plan == [[2, 1], [0]]


def test_bad_caps_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        plan_buckets([8], [F32], 0, 10)
