"""Communication hooks: the bfloat16 codec, hook specs by name, and the hooks under real mpiexec on 1 to 4 ranks."""

import math
from pathlib import Path

import numpy as np
import pytest
from mpi_launch import run_mpi

from minidl.distributed import make_comm_hook, parse_comm_hook
from minidl.distributed.bfloat16 import BF16_SUM, from_bfloat16, to_bfloat16

HERE = Path(__file__).parent


def bits(*words):
    return np.array(words, np.uint32).view(np.float32)


def test_bfloat16_rounds_to_nearest_with_ties_to_even():
    x = bits(
        0x3F808000,  # 1.00390625: a tie between 0x3F80 (even) and 0x3F81 -> 0x3F80
        0x3F818000,  # a tie between 0x3F81 and 0x3F82 (even) -> 0x3F82
        0x3F808001,  # just above the tie -> up
        0x3F807FFF,  # just below -> down
        0xBF818000,  # the same tie, negative -> 0xBF82
        0x7F7FFFFF,  # the largest float32 rounds up into inf, as round-to-nearest says
        0x00000001,  # the smallest subnormal -> 0
    )
    assert to_bfloat16(x).tolist() == [0x3F80, 0x3F82, 0x3F81, 0x3F80, 0xBF82, 0x7F80, 0x0000]


def test_bfloat16_keeps_nan_and_inf_and_decodes_exactly():
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    x[0:1].view(np.uint32)[0] = 0x7FFFFFFF  # every low bit set: naive rounding would carry it to 0x8000
    back = from_bfloat16(to_bfloat16(x))
    assert np.isnan(back[:2]).all()
    assert back[2:].tolist() == [np.inf, -np.inf, 0.0, -0.0] and np.signbit(back[5])
    h = np.arange(0, 2**16, dtype=np.uint16)
    finite = ~np.isnan(from_bfloat16(h))
    assert np.array_equal(to_bfloat16(from_bfloat16(h))[finite], h[finite])  # every bfloat16 survives a round trip


def test_bf16_sum_op_adds_in_float32_and_rounds_once():
    a, b = to_bfloat16(np.float32([1.0, 256.0])), to_bfloat16(np.float32([2**-8, 1.0]))
    out = np.empty(2, np.uint16)
    BF16_SUM.ufunc(a, b, out)  # called as the MPI transport calls it
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even is 1; 256 + 1 is a tie between 256 and 258: even is 256
    assert from_bfloat16(out).tolist() == [1.0, 256.0]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("none", ("none", {})),
        ("fp16", ("fp16", {})),
        ("BF16", ("bf16", {})),
        ("powersgd:rank=2", ("powersgd", {"rank": 2, "start_iter": 0, "min_rate": 2.0, "seed": 0})),
        ("powersgd:rank=4, start_iter=10", ("powersgd", {"rank": 4, "start_iter": 10, "min_rate": 2.0, "seed": 0})),
        ("topk:ratio=0.05", ("topk", {"ratio": 0.05})),
    ],
)
def test_specs_parse_with_defaults(spec, expected):
    assert parse_comm_hook(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gzip", "unknown hook 'gzip'; expected one of none, fp16, bf16, powersgd:rank=1"),
        ("powersgd:rnak=2", "powersgd has no key 'rnak'; its keys: rank, start_iter, min_rate, seed"),
        ("powersgd:rank=two", "rank must be an integer, got 'two'"),
        ("powersgd:rank=0", "rank must be an integer >= 1, got 0"),
        ("powersgd:rank", "rank needs a value"),
        ("topk:ratio=0", "ratio must be a number in (0, 1], got 0.0"),
        ("topk:ratio=1.5", "ratio must be a number in (0, 1], got 1.5"),
        ("fp16:ratio=1", "fp16 has no key 'ratio'; its keys: none"),
    ],
)
def test_bad_specs_name_the_mistake_and_what_is_valid(spec, message):
    with pytest.raises(ValueError) as e:
        parse_comm_hook(spec)
    assert message in str(e.value)


def test_each_make_gives_fresh_state():
    (s1, h1), (s2, h2) = make_comm_hook("powersgd:rank=2"), make_comm_hook("powersgd:rank=2")
    assert h1 is h2 and s1 is not s2 and s1.rank == 2
    assert make_comm_hook("none") == (None, None)


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_hook_properties(nprocs):
    proc = run_mpi(nprocs, [str(HERE / "mpi_hooks_check.py")], timeout=240)
    assert f"{nprocs} ranks: hooks ok" in proc.stdout


@pytest.mark.mpi
def test_powersgd_rank_2_and_top_k_train_the_digits_nearly_as_well_as_plain_ddp_in_the_same_steps():
    specs = ["none", "powersgd:rank=2", "topk:ratio=0.1"]
    proc = run_mpi(2, [str(HERE / "mpi_hooks_converge.py"), "5", *specs], timeout=120)
    rows = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ")[0] in specs)
    accuracy = {spec: float(rows[spec].split()[0]) for spec in specs}
    wire = {spec: float(rows[spec].split()[1]) for spec in specs}
    assert accuracy["none"] > 0.93, accuracy  # the baseline itself has learned
    assert accuracy["powersgd:rank=2"] >= accuracy["none"] - 0.02, accuracy
    assert accuracy["topk:ratio=0.1"] >= accuracy["none"] - 0.03, accuracy
    # the digits MLP: 64 -> 128 -> 10, float32. PowerSGD: the biases whole, P and Q of rank 2 for both weights
    assert wire["powersgd:rank=2"] == 4 * (128 + 10 + 2 * (128 + 64) + 2 * (10 + 128)), wire
    assert wire["topk:ratio=0.1"] == math.ceil(0.1 * (64 * 128 + 128 + 128 * 10 + 10)) * (4 + 4), wire
