"""The lesson notebooks: stored ones equal their sources and have run; every source runs top to bottom.

The execution test is the one CI relies on to keep the notebooks working: each runs in a fresh
Jupyter kernel (nbclient), as a learner would run it, with the project's code as installed.
"""

import pytest

from notebooks import build

SOURCES = build.sources()
IDS = [s.stem for s in SOURCES]


def test_there_are_six_lessons():
    assert [s.stem[:2] for s in SOURCES] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_stored_notebook_is_its_source_executed(source):
    assert build.differences(source) == []


def test_parse_percent_format():
    text = "# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n# %%\n\n# %% [markdown]\n# more\n"
    assert build.parse(text) == [("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("markdown", "more")]


@pytest.mark.parametrize(
    ("text", "message"),
    [("import os\n# %%\nx = 1\n", "before the first"), ("# %% [markdown]\nnot a comment\n", "must start with")],
)
def test_parse_rejects_malformed_sources(text, message):
    with pytest.raises(ValueError, match=message):
        build.parse(text)


def test_a_changed_source_is_detected(tmp_path, monkeypatch):
    source = SOURCES[0]
    changed = tmp_path / source.name
    changed.write_text(source.read_text() + "\n# %%\nprint('a new cell')\n")
    monkeypatch.setattr(build, "stored_path", lambda s: build.HERE / f"{s.stem}.ipynb")
    problems = build.differences(changed)
    assert problems and "cells" in problems[0]


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(600)  # a hang guard: about a minute each on 2 idle cores, several on a loaded machine
@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_notebook_runs_top_to_bottom(source):
    nb = build.notebook_of(source)
    build.execute(nb, timeout=build.TEST_CELL_TIMEOUT)  # raises CellExecutionError naming the cell
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
