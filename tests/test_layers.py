"""The package layers, checked from the source with ``ast``: imports only point down, and ``reports`` has no cycle.

innout_core (the science) < tasks (one stage each) < flows (Prefect + Dask, the command); ``reports`` reads run
directories and sits beside ``tasks`` (flows call it). Every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("innout_core", "tasks", "flows", "reports")
#: package -> top-level modules it must never import
FORBIDDEN = {
    "innout_core": ("tasks", "flows", "reports", "prefect", "prefect_dask"),
    "tasks": ("flows", "reports"),
    "reports": ("flows", "tasks"),
}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    package = _module_name(root, path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            # `from pkg import name` may import the submodule pkg.name: count both candidates
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
    return out


def layer_violations(root: Path) -> list[str]:
    """'file:line imports X' for every import statement that reaches a forbidden (higher or sibling) layer."""
    bad: dict[tuple[str, int], str] = {}
    for pkg, forbidden in FORBIDDEN.items():
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, mod in imports_of(root, path):
                top = mod.split(".")[0]
                if top in forbidden and (rel, line) not in bad:  # the statement's module, not its names
                    bad[(rel, line)] = f"{rel}:{line} imports {mod} ({pkg} must not import {top})"
    return sorted(bad.values())


def module_cycle(root: Path, package: str) -> list[str]:
    """One import cycle among the modules of ``package`` (module names, first repeated last), or [] if none."""
    files = {_module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for _, mod in imports_of(root, path):
            if mod in files and mod != name and mod != package:
                graph[name].add(mod)
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        return list(err.args[1])
    return []


def test_imports_point_down_the_layers():
    assert layer_violations(ROOT) == []


@pytest.mark.parametrize("package", ["reports", "tasks", "flows", "innout_core"])
def test_no_import_cycles(package):
    assert module_cycle(ROOT, package) == []


def test_checker_finds_violations_and_cycles(tmp_path):
    """The checks above can fail: a made-up tree with each kind of defect."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "innout_core" / "core.py").write_text("def f():\n    from prefect import flow\n    return flow\n")
    (tmp_path / "tasks" / "stage.py").write_text("import os\nfrom flows.plan import Branch\n")
    (tmp_path / "reports" / "tables.py").write_text("from . import plots\n")
    (tmp_path / "reports" / "plots.py").write_text("from reports.tables import X\nfrom tasks import common\n")
    (tmp_path / "reports" / "labels.py").write_text("from innout_core import store\n")
    assert layer_violations(tmp_path) == [
        "innout_core/core.py:2 imports prefect (innout_core must not import prefect)",
        "reports/plots.py:2 imports tasks (reports must not import tasks)",
        "tasks/stage.py:2 imports flows.plan (tasks must not import flows)",
    ]
    cycle = module_cycle(tmp_path, "reports")
    assert sorted(set(cycle)) == ["reports.plots", "reports.tables"] and cycle[0] == cycle[-1]
    assert module_cycle(tmp_path, "tasks") == []
