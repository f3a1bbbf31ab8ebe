"""Data-parallel training: the only place minidl talks to the interconnect (via ``collectives``).

Every rank holds a full replica of the model and trains on its own shard of each batch;
``DistributedDataParallel`` averages the gradients with a hand-written allreduce, in buckets,
overlapped with backward.
"""

from minidl.distributed.buckets import Bucket, build_buckets, plan_buckets
from minidl.distributed.ddp import DistributedDataParallel, SyncStats, world
from minidl.distributed.noise_scale import GradientNoiseScale

__all__ = [
    "Bucket",
    "DistributedDataParallel",
    "GradientNoiseScale",
    "SyncStats",
    "build_buckets",
    "plan_buckets",
    "world",
]
