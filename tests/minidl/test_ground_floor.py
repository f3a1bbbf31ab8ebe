"""minidl's ground floor imports nothing above it (imports read from the source, not from a running process).

Ground floor: ``grad_mode`` (nothing), ``window`` and ``random`` (numpy), ``tensor`` (numpy, grad
mode, random), ``kernels`` (numpy, numba, its own modules, ``window``). The one allowed upward edge
is ``tensor.py``'s final ``from minidl import autograd, ops``: Tensor's methods call the engine and
the ops.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

MINIDL = Path(__file__).resolve().parents[2] / "minidl"


def minidl_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``minidl`` module a file imports, at any depth (lazy imports count too;
    imports under ``if TYPE_CHECKING:`` do not, as they never run)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for n in ast.walk(block)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "minidl"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "minidl":
            names = [f"{node.module}.{a.name}" if node.module == "minidl" else node.module for a in node.names]
            found += [(node.lineno, n) for n in names]
    return found


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


FLOOR = {
    "grad_mode.py": (),
    "window.py": (),
    "random.py": (),  # the seeded generator behind randn & co.
    "tensor.py": ("minidl.grad_mode", "minidl.random"),  # randn & co. draw from minidl's seeded generator
}


@pytest.mark.parametrize("name", sorted(FLOOR))
def test_ground_floor_modules_import_nothing_above_them(name):
    path = MINIDL / name
    imports = minidl_imports(path)
    if name == "tensor.py":  # the accepted exception: the operator methods' import, at the end of the file
        last = max(line for line, _ in imports)
        upward = [(line, m) for line, m in imports if m in ("minidl.autograd", "minidl.ops")]
        assert {m for _, m in upward} == {"minidl.autograd", "minidl.ops"}
        assert all(line == last for line, _ in upward), upward
        imports = [(line, m) for line, m in imports if line != last]
    bad = [(line, m) for line, m in imports if not allowed(m, FLOOR[name])]
    assert not bad, f"minidl/{name} imports above the ground floor: {bad}"


@pytest.mark.parametrize("path", sorted((MINIDL / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_import_only_kernels_and_the_window_geometry(path):
    bad = [(line, m) for line, m in minidl_imports(path) if not allowed(m, ("minidl.kernels", "minidl.window"))]
    assert not bad, f"minidl/kernels/{path.name} imports above the ground floor: {bad}"


def test_the_checker_sees_an_upward_import(tmp_path):
    planted = tmp_path / "pooling.py"
    planted.write_text("def f():\n    from minidl.ops.conv import Geometry\n")
    assert minidl_imports(planted) == [(2, "minidl.ops.conv")]


def test_autograd_holds_no_injected_tensor_global():
    tree = ast.parse((MINIDL / "autograd.py").read_text())
    declared = [n for n in tree.body if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "Tensor"]
    assert not declared
    assert "autograd.Tensor =" not in (MINIDL / "tensor.py").read_text()


@pytest.mark.parametrize("module", ["minidl.autograd", "minidl.ops", "minidl.tensor", "minidl.kernels.pooling"])
def test_any_submodule_imports_first_in_a_fresh_process(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
