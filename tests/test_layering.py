"""The architecture as a test: which package may import which, read from the source files.

The rules (README, "Layout"): ``collectives`` stands alone and never imports ``minidl``; inside
``collectives`` only the simulator, the benchmarks and the lessons import ``collectives.sim``, so
the MPI path runs without it; ``minidl.distributed`` is the one bridge from ``minidl`` to
``collectives``; and ``minidl`` is built in floors (ground floor -> ops/kernels -> nn/optim/data ->
distributed -> train/study), each importing only floors below it. Every ``import`` statement
counts, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.add(stem)
            # ``from minidl import ops`` imports the submodule minidl.ops
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def _sources(package: str) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted((ROOT / package).rglob("*.py"))}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(modules: dict[str, set[str]], allowed, forbidden: str) -> list[str]:
    return sorted(
        f"{mod} imports {imp}"
        for mod, imps in modules.items()
        if not allowed(mod)
        for imp in imps
        if _within(imp, forbidden)
    )


COLLECTIVES = _sources("collectives")
MINIDL = _sources("minidl")


def test_the_sources_were_found() -> None:
    # guards the rest: an empty scan would pass every rule below
    assert "collectives.algorithms.ring" in COLLECTIVES
    assert "minidl.distributed.ddp" in MINIDL
    assert "collectives.sim" in COLLECTIVES["collectives.sim.simulate"] or any(
        _within(i, "collectives.sim") for i in COLLECTIVES["collectives.sim.simulate"]
    )


def test_collectives_never_imports_minidl() -> None:
    assert _violations(COLLECTIVES, lambda m: False, "minidl") == []


def test_the_mpi_path_does_not_import_the_simulator() -> None:
    def offline(mod: str) -> bool:
        return any(_within(mod, p) for p in ("collectives.sim", "collectives.bench", "collectives.lessons"))

    assert _violations(COLLECTIVES, offline, "collectives.sim") == []


def test_only_minidl_distributed_imports_collectives() -> None:
    assert _violations(MINIDL, lambda m: _within(m, "minidl.distributed"), "collectives") == []


# minidl's floors, lowest first; a module may import its own floor and those below.
FLOORS: list[tuple[str, ...]] = [
    ("minidl.grad_mode", "minidl.window", "minidl.random"),
    ("minidl.kernels",),
    ("minidl.autograd", "minidl.tensor"),
    ("minidl.ops", "minidl.functional", "minidl.gradcheck"),
    ("minidl.nn", "minidl.optim", "minidl.data", "minidl.models", "minidl.checkpoint", "minidl.metrics"),
    ("minidl.distributed",),
    (
        "minidl.experiments",
        "minidl.threads",
        "minidl.train",
        "minidl.train_options",
        "minidl.study",
        "minidl.bench",
        "minidl.lessons",
    ),
]


def _floor(name: str) -> int | None:
    for level, prefixes in enumerate(FLOORS):
        if any(_within(name, p) for p in prefixes):
            return level
    return None


def test_every_minidl_module_has_a_floor() -> None:
    unplaced = [m for m in MINIDL if m != "minidl" and _floor(m) is None]
    assert unplaced == [], f"place these modules in FLOORS: {unplaced}"


# The accepted exception: Tensor's operator methods (``a + b``, ``a @ b``) call into ops.
UPWARD_ALLOWED = {("minidl.tensor", "minidl.ops")}


@pytest.mark.parametrize("module", sorted(m for m in MINIDL if m != "minidl"))
def test_minidl_imports_only_downward(module: str) -> None:
    level = _floor(module)
    upward = []
    for imp in MINIDL[module]:
        target = _floor(imp)
        if target is None or target <= level:
            continue
        if any(module == m and _within(imp, t) for m, t in UPWARD_ALLOWED):
            continue
        upward.append(imp)
    assert upward == [], f"{module} (floor {level}) imports from above: {sorted(set(upward))}"


def test_the_checker_sees_a_violation() -> None:
    # the rules must be able to fail: a made-up module breaking each one is caught
    fake_collectives = {"collectives.api": {"minidl.tensor", "collectives.sim.presets"}}
    fake_minidl = {"minidl.nn.linear": {"collectives"}, "minidl.distributed.ddp": {"collectives"}}
    assert _violations(fake_collectives, lambda m: False, "minidl") == ["collectives.api imports minidl.tensor"]
    assert _violations(fake_collectives, lambda m: False, "collectives.sim") == [
        "collectives.api imports collectives.sim.presets"
    ]
    assert _violations(fake_minidl, lambda m: _within(m, "minidl.distributed"), "collectives") == [
        "minidl.nn.linear imports collectives"
    ]
    assert _floor("minidl.kernels.pooling") < _floor("minidl.ops.conv")
