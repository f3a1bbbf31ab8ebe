"""MPI's logical and bitwise ops, and long double dtypes, through every algorithm (in the simulator).

The wrapper runs ``MPI.LAND`` ... ``MPI.BXOR`` and ``MPI.LONG_DOUBLE``/``C_LONG_DOUBLE_COMPLEX``
buffers by hand, so the algorithms must give exactly what MPI defines. The expected values come
from Python integers (C's meaning: a logical op gives 1 or 0; bitwise ops on two's complement),
not from numpy's ufuncs, which are what the library itself reduces with.
"""

import functools
import operator

import numpy as np
import pytest

import collectives
from collectives.ops import LOGICAL_OPS, LONG_DOUBLE_DTYPES, get_op
from collectives.sim import run_real

PYTHON_OPS = {
    "land": lambda a, b: int(bool(a) and bool(b)),
    "lor": lambda a, b: int(bool(a) or bool(b)),
    "lxor": lambda a, b: int(bool(a) != bool(b)),
    "band": operator.and_,
    "bor": operator.or_,
    "bxor": operator.xor,
}
INTEGER_DTYPES = ["int8", "uint8", "int16", "uint32", "int64", "uint64", "bool"]


def python_reference(op: str, inputs: list[np.ndarray]) -> np.ndarray:
    """Element by element with Python ints (a test oracle: clarity over speed)."""
    dtype = inputs[0].dtype
    columns = zip(*[[int(v) for v in x] for x in inputs])
    out = [functools.reduce(PYTHON_OPS[op], column) for column in columns]
    if dtype.kind in "iu":  # Python's & | ^ on negative ints are two's complement: narrow back
        bits = 8 * dtype.itemsize
        out = [v % (1 << bits) for v in out]
        if dtype.kind == "i":
            out = [v - (1 << bits) if v >= 1 << (bits - 1) else v for v in out]
    return np.array(out, dtype=np.int64 if dtype.kind == "i" else np.uint64).astype(dtype)


def inputs_for(p: int, n: int, dtype: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return [rng.integers(0, 2, n).astype(bool) for _ in range(p)]
    info = np.iinfo(dt)
    # every bit pattern, with zeros common enough that the logical ops see both truth values
    return [
        np.where(rng.random(n) < 0.3, dt.type(0), rng.integers(info.min, info.max, n, dtype=dt, endpoint=True))
        for _ in range(p)
    ]


@pytest.mark.parametrize("algorithm", sorted(collectives.ALGORITHMS))
@pytest.mark.parametrize("op", sorted(LOGICAL_OPS))
def test_logical_and_bitwise_ops_give_what_mpi_defines(algorithm, op):
    for p in (1, 2, 3, 5):
        for dtype in INTEGER_DTYPES:
            inputs = inputs_for(p, 2 * p + 3, dtype, seed=p)
            expected = python_reference(op, inputs)
            for rank, out in enumerate(run_real(algorithm, inputs, op).buffers):
                assert out.dtype == expected.dtype and np.array_equal(out, expected), (
                    f"{algorithm} {op} {dtype} p={p} rank {rank}: {out} != {expected}"
                )


def test_the_reference_knows_c_semantics():
    """The oracle itself, on values worked by hand."""
    a, b = np.array([0, 5, -1, 6], np.int8), np.array([3, 0, -1, 3], np.int8)
    assert python_reference("land", [a, b]).tolist() == [0, 0, 1, 1]
    assert python_reference("lxor", [a, b]).tolist() == [1, 1, 0, 0]
    assert python_reference("band", [a, b]).tolist() == [0, 0, -1, 2]
    assert python_reference("bxor", [a, b]).tolist() == [3, 5, 0, 5]


@pytest.mark.parametrize("op", sorted(LOGICAL_OPS))
def test_logical_ops_refuse_floating_dtypes_by_name(op):
    assert "integer and bool dtypes only" in get_op(op).check_dtype(np.dtype(np.float64))
    assert get_op(op).check_dtype(np.dtype(bool)) is None


@pytest.mark.skipif(not LONG_DOUBLE_DTYPES, reason="long double is double on this platform")
@pytest.mark.parametrize("algorithm", sorted(collectives.ALGORITHMS))
def test_long_double_sums_are_exact(algorithm):
    """Small integers and Gaussian integers: exact in any order, compared by value (the padding bytes are noise)."""
    for dtype in LONG_DOUBLE_DTYPES:
        for op in ("sum", "prod", "max", "min") if dtype.kind == "f" else ("sum", "prod"):
            for p in (1, 2, 3, 5):
                rng = np.random.default_rng(p)
                n = 2 * p + 1
                if op == "prod":
                    vals = [rng.choice(np.array([1, -1, 2]), n) for _ in range(p)]
                else:
                    vals = [rng.integers(-1000, 1000, n) for _ in range(p)]
                if dtype.kind == "c":
                    vals = [v + 1j * v[::-1] for v in vals]
                inputs = [np.asarray(v).astype(dtype) for v in vals]
                exact = [[complex(x) if dtype.kind == "c" else int(x) for x in v] for v in vals]
                combine = {"sum": operator.add, "prod": operator.mul, "max": max, "min": min}[op]
                expected = [functools.reduce(combine, column) for column in zip(*exact)]
                for out in run_real(algorithm, inputs, op).buffers:
                    assert out.dtype == dtype
                    assert [complex(x) if dtype.kind == "c" else int(x) for x in out] == expected, (
                        f"{algorithm} {op} {dtype} p={p}"
                    )


def test_the_mismatch_check_tells_every_accepted_dtype_apart():
    from collectives.agreement import dtype_code
    from collectives.ops import BOOL, LONG_DOUBLE_DTYPES, NUMERIC_DTYPES

    accepted = [*NUMERIC_DTYPES, BOOL, *LONG_DOUBLE_DTYPES]
    codes = [dtype_code(np.dtype(d)) for d in accepted]
    assert 0 not in codes  # 0 means "unknown": two unknown dtypes would look alike
    assert len(set(codes)) == len(accepted)
