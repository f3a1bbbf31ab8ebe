"""python -m minidl.bench: the numpy floor computes the same step as minidl, and the script runs end to end.

No timing is asserted (the machine is shared); only that the comparison is between equal computations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl import bench

ROOT = Path(__file__).resolve().parents[2]


def test_numpy_floor_takes_the_same_step_as_minidl():
    step, model = bench.minidl_step("mlp")
    floor = bench.numpy_floor_step(model)
    for _ in range(3):  # the momentum buffers take part from the second step on
        assert abs(step() - floor()) < 1e-5
    for p, q in zip(model.parameters(), floor.params):
        np.testing.assert_allclose(p.data, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", bench.MODELS)
def test_models_build_and_step(name):
    step, _ = bench.minidl_step(name)
    first, second = step(), step()
    assert np.isfinite(first) and np.isfinite(second)


def test_torch_twins_match_minidl():
    pytest.importorskip("torch")
    for name in bench.MODELS:
        engines, _ = bench.engines_for(name, use_torch=True, numpy_reference=False)
        bench.check_same_loss(name, engines)  # raises if the twins differ


def test_script_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "minidl.bench", "--models", "mlp", "--threads", "1", "--rounds", "2", "--steps", "1"]
    cmd += ["--warmup", "0", "--memory-repeats", "1", "--no-torch", "--numpy-reference", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "minidl/numpy-floor" in proc.stdout or "minidl/floor" in proc.stdout
    data = json.loads(out.read_text())
    (result,) = data["results"]
    assert set(result["ratios"]) == {"minidl/numpy-floor", "minidl/minidl-numpy"}
    assert len(result["round_step_ms"]["minidl"]) == 2
    assert result["peak_step_bytes"]["minidl"] > 0
    bad = subprocess.run(
        [sys.executable, "-m", "minidl.bench", "--models", "vgg"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "unknown model 'vgg'" in bad.stderr


def test_engines_alternate_single_steps_in_rotating_order():
    from minidl.bench.timing import interleaved

    log = []
    engines = {k: (lambda k=k: log.append(k)) for k in ("minidl", "torch", "floor")}
    times = interleaved(engines, 4)
    assert log == ["minidl", "torch", "floor", "torch", "floor", "minidl", "floor", "minidl", "torch"] + [
        "minidl",
        "torch",
        "floor",
    ]
    assert {k: len(v) for k, v in times.items()} == {"minidl": 4, "torch": 4, "floor": 4}


def test_lead_in_steps_run_untimed_before_each_timed_step():
    import time

    from minidl.bench.timing import default_lead_in, interleaved

    log, calls = [], {"minidl": 0, "torch": 0}

    def step(k: str) -> None:  # the two lead-in steps of a turn are slow, the timed third one fast
        log.append(k)
        calls[k] += 1
        if calls[k] % 3:
            time.sleep(0.02)

    engines = {k: (lambda k=k: step(k)) for k in ("minidl", "torch")}
    times = interleaved(engines, 2, lead_in=2)
    assert log == ["minidl"] * 3 + ["torch"] * 3 + ["torch"] * 3 + ["minidl"] * 3  # turns rotate, 2 untimed + 1
    assert {k: len(v) for k, v in times.items()} == {"minidl": 2, "torch": 2}
    assert max(max(v) for v in times.values()) < 0.015  # only the third step of each turn was timed
    assert default_lead_in(1) == 0 and default_lead_in(2) == 1


def test_ratio_summary_pairs_step_by_step():
    from minidl.bench.timing import ratio_summary

    # ratio of medians would be 5/3; the pairs say 1, 2, 5 (median 2)
    r = ratio_summary([1.0, 4.0, 5.0], [1.0, 2.0, 1.0])
    assert (r["median"], r["min"], r["max"], r["pairs"]) == (2.0, 1.0, 5.0, 3)
    with pytest.raises(ValueError):
        ratio_summary([1.0, 2.0], [1.0])  # unequal lengths are a bug in the caller, not a shorter answer


def test_op_overhead_runs_and_records_the_machine(tmp_path):
    from minidl.bench.overhead import CHAINS

    out = tmp_path / "overhead.json"
    cmd = [sys.executable, "-m", "minidl.bench", "--op-overhead", "--no-torch", "--rounds", "1", "--steps", "2"]
    cmd += ["--length", "5", "--size", "2", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [row["chain"] for row in data["op_overhead"]] == list(CHAINS)
    assert data["machine"]["command"][-2:] == ["--json", str(out)]
    assert "blas" in data["machine"] and "load_average" in data["machine"]


@pytest.mark.parametrize("keep", [False, True])
def test_blas_overrides_are_dropped_and_the_kernel_recorded(tmp_path, keep):
    pytest.importorskip("threadpoolctl")
    out = tmp_path / "overhead.json"
    cmd = [sys.executable, "-m", "minidl.bench", "--op-overhead", "--no-torch", "--rounds", "1", "--steps", "1"]
    cmd += ["--length", "2", "--size", "2", "--json", str(out)] + (["--keep-blas-env"] if keep else [])
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    machine = json.loads(out.read_text())["machine"]
    (blas,) = [lib for lib in machine["blas"] if lib["user_api"] == "blas"]
    if keep:  # the forced kernel ran, and the record says so
        assert machine["environment"]["OPENBLAS_CORETYPE"] == "Haswell" and not machine["environment_removed"]
        assert blas["architecture"] == "Haswell"
    else:
        assert machine["environment_removed"] == {"OPENBLAS_CORETYPE": "Haswell"}
        assert "OPENBLAS_CORETYPE" not in machine["environment"]
        assert "running without OPENBLAS_CORETYPE=Haswell" in proc.stderr
