"""minidl.bench.tables: the docs table rebuilt from --json runs, verdicts from the quartiles of the paired ratios."""

from __future__ import annotations

import json

import pytest

from minidl.bench import tables


def ratio(median, q1, q3):
    return {"median": median, "q1": q1, "q3": q3, "min": q1 - 0.1, "max": q3 + 0.1, "pairs": 30}


def run_file(tmp_path, ratios, memory=None):
    row = {
        "model": "resnet-block",
        "threads": 1,
        "median_step_ms": {"minidl": 30.0, "torch": 20.0},
        "ratios": {"minidl/torch": ratios},
        "peak_step_bytes": memory or {},
    }
    path = tmp_path / "run.json"
    path.write_text(
        json.dumps({"machine": {"load_average": [3, 2, 1], "load_average_end": [4, 2, 1]}, "results": [row]})
    )
    return str(path)


@pytest.mark.parametrize(
    "r, want", [(ratio(1.4, 1.3, 1.5), "met"), (ratio(1.4, 1.3, 1.6), "unclear"), (ratio(1.7, 1.51, 1.8), "missed")]
)
def test_verdict_from_quartiles(tmp_path, r, want):
    (line,) = tables.rows(run_file(tmp_path, r))
    assert f"torch <= 1.5: {want}" in line
    assert "| 3.0-4.0 | 30.00 | 20.00 | 1.40x" in line or "| 3.0-4.0 | 30.00 | 20.00 | 1.70x" in line


def test_write_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{tables.START}\nold table\n{tables.END}\noutro\n")
    tables.main(["--write", str(doc), run_file(tmp_path, ratio(1.4, 1.3, 1.5))])
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert text.count("| resnet-block | 1 | run.json |") == 1


def test_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        tables.main([str(tmp_path / "missing.json")])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
