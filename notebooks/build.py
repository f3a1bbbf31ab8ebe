"""Build the lesson notebooks from their sources: ``python -m notebooks.build [NAME ...] [--check]``.

The source of truth of ``notebooks/NN_name.ipynb`` is ``notebooks/src/NN_name.py``, a plain
Python file in the "percent" format that Jupytext, VS Code and Spyder read: ``# %%`` starts a
code cell, ``# %% [markdown]`` a Markdown cell whose lines are comments. Why not edit the
.ipynb directly: a .py source diffs and reviews as code, and a stored notebook is then a pure
function of its source plus one execution, so "outputs never go stale silently" is something a
test can check (``--check``: every stored notebook's cells equal its source's, and every code
cell has run without error). Why not Jupytext itself: the format is twenty lines to parse, and
the build must not need one more package.

Building executes each notebook top to bottom in a fresh kernel (nbclient) with ``notebooks/``
as the working directory and stores it with its outputs, so it reads well on a code host.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
CELL_TIMEOUT = 600  # seconds for one cell when building
TEST_CELL_TIMEOUT = 540  # in the test suite: a hang guard, not a benchmark
KERNEL = "python3"


def sources() -> list[Path]:
    """Every notebook source, in lesson order."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def parse(text: str) -> list[tuple[str, str]]:
    """(cell type, source) pairs from a percent-format file; a Markdown cell's ``# `` prefixes removed."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"text before the first '# %%' cell marker: {line!r}")
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [_uncomment(line) for line in lines]
        body = "\n".join(lines).strip("\n")
        if body:
            out.append((kind, body))
    return out


def _uncomment(line: str) -> str:
    if line in ("#", ""):
        return ""
    if not line.startswith("# "):
        raise ValueError(f"a Markdown cell line must start with '# ': {line!r}")
    return line[2:]


def notebook_of(source: Path):
    """An unexecuted notebook (nbformat v4) with the source's cells."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, body in parse(source.read_text()):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(make(body))
    return nb


def execute(nb, timeout: int = CELL_TIMEOUT) -> None:
    """Run every cell in a fresh kernel in ``notebooks/``; raises nbclient's CellExecutionError on a failure."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(HERE)}}).execute()


def stored_path(source: Path) -> Path:
    return HERE / f"{source.stem}.ipynb"


def differences(source: Path) -> list[str]:
    """Why the stored notebook is not the executed source (empty when it is)."""
    import nbformat

    path = stored_path(source)
    if not path.exists():
        return [f"{path.name} does not exist"]
    stored = nbformat.read(path, as_version=4)
    want = parse(source.read_text())
    got = [(c.cell_type, c.source) for c in stored.cells]
    problems = []
    if len(want) != len(got):
        problems.append(f"{path.name} has {len(got)} cells, its source {len(want)}")
    for i, (w, g) in enumerate(zip(want, got)):
        if w != g:
            problems.append(f"{path.name} cell {i} differs from {source.name}: {g[1][:60]!r} vs {w[1][:60]!r}")
            break
    for i, cell in enumerate(stored.cells):
        if cell.cell_type != "code":
            continue
        if cell.execution_count is None:
            problems.append(f"{path.name} cell {i} has not been executed")
            break
        if any(o.get("output_type") == "error" for o in cell.outputs):
            problems.append(f"{path.name} cell {i} stored an error")
            break
    return problems


def build(source: Path) -> float:
    """Execute one source and store the notebook with its outputs; returns the seconds it took."""
    import nbformat

    nb = notebook_of(source)
    start = time.perf_counter()
    execute(nb)
    seconds = time.perf_counter() - start
    nb.metadata["build"] = {"seconds": round(seconds, 1)}
    nbformat.write(nb, stored_path(source))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m notebooks.build", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to build, by number or name (default: all)")
    parser.add_argument("--check", action="store_true", help="only check the stored notebooks against the sources")
    args = parser.parse_args(argv)
    chosen = sources()
    if args.names:
        chosen = [s for s in chosen if any(s.stem.startswith(n) or s.stem == n for n in args.names)]
        if not chosen:
            parser.error(f"no notebook matches {' '.join(args.names)}; have {', '.join(s.stem for s in sources())}")
    if args.check:
        problems = [p for s in chosen for p in differences(s)]
        print("\n".join(problems) or f"{len(chosen)} notebook(s) match their sources")
        return 1 if problems else 0
    for source in chosen:
        print(f"{source.stem}: ", end="", flush=True)
        print(f"{build(source):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
