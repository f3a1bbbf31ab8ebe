"""Data-parallel training: the only place minidl talks to the interconnect (via ``collectives``).

Shaped like ``torch.distributed``: ``get_rank()``, ``get_world_size()``, ``all_reduce``,
``broadcast``, ``barrier`` (:mod:`minidl.distributed.comm`), and ``DistributedDataParallel``,
which keeps every rank's replica in step by averaging the gradients with a hand-written
allreduce, in buckets, overlapped with backward (or with a communication hook: fp16/bf16
compression, PowerSGD, top-k); ``SyncBatchNorm`` and ``convert_sync_batchnorm`` normalise with
the statistics of the global batch; ``ZeroRedundancyOptimizer`` shards the optimizer state (ZeRO
stage 1) and the averaged gradients (stage 2) over the ranks.
"""

from minidl.distributed.buckets import Bucket, build_buckets, plan_buckets
from minidl.distributed.comm import (
    CollectiveTimeoutError,
    Link,
    abort_on_error,
    algorithms,
    all_gather,
    all_reduce,
    barrier,
    broadcast,
    check_algorithm,
    get_rank,
    get_world_size,
    parse_link,
    reduce_scatter,
    resolve_link,
    set_timeout,
    shard_bounds,
    world,
)
from minidl.distributed.compression import bf16_compress_hook, fp16_compress_hook
from minidl.distributed.ddp import DistributedDataParallel, SyncStats
from minidl.distributed.hook_spec import HOOKS, format_comm_hook, hook_names, make_comm_hook, parse_comm_hook
from minidl.distributed.hooks import GradBucket, allreduce_hook
from minidl.distributed.noise_scale import GradientNoiseScale
from minidl.distributed.powersgd import PowerSGDState, powersgd_hook
from minidl.distributed.sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from minidl.distributed.topk import TopKState, topk_hook
from minidl.distributed.zero import ZeroRedundancyOptimizer

__all__ = [
    "HOOKS",
    "Bucket",
    "CollectiveTimeoutError",
    "DistributedDataParallel",
    "GradBucket",
    "GradientNoiseScale",
    "Link",
    "PowerSGDState",
    "SyncBatchNorm",
    "SyncStats",
    "TopKState",
    "ZeroRedundancyOptimizer",
    "abort_on_error",
    "algorithms",
    "all_gather",
    "all_reduce",
    "allreduce_hook",
    "barrier",
    "bf16_compress_hook",
    "broadcast",
    "build_buckets",
    "check_algorithm",
    "convert_sync_batchnorm",
    "format_comm_hook",
    "fp16_compress_hook",
    "get_rank",
    "get_world_size",
    "hook_names",
    "make_comm_hook",
    "parse_comm_hook",
    "parse_link",
    "plan_buckets",
    "powersgd_hook",
    "reduce_scatter",
    "resolve_link",
    "set_timeout",
    "shard_bounds",
    "topk_hook",
    "world",
]
