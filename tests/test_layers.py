"""The package layers, checked from the source with ``ast``: imports only point down, and ``reports`` has no cycle.

innout_core (the science) < tasks (one stage each) < flows (Prefect + Dask, the command); ``reports`` reads run
directories and sits beside ``tasks`` (flows call it). Every import counts, also those inside functions.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
#: tools/layers_diagram.py: the import reader (shared with these checks) and the README diagram
LD = load_script(ROOT / "tools" / "layers_diagram.py", "tools_layers_diagram")
imports_of, _module_name = LD.imports_of, LD.module_name
PACKAGES = ("innout_core", "tasks", "flows", "reports")
#: package -> top-level modules it must never import
FORBIDDEN = {
    "innout_core": ("tasks", "flows", "reports", "prefect", "prefect_dask"),
    "tasks": ("flows", "reports"),
    "reports": ("flows", "tasks"),
}


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


def test_readme_layers_block_is_the_scripts_output():
    """README.md's layout section holds tools/layers_diagram.py's current output (it cannot go stale)."""
    readme = (ROOT / "README.md").read_text("utf-8")
    assert LD.readme_block(readme) == LD.diagram(ROOT), "refresh it: python tools/layers_diagram.py --write"


def test_diagram_levels_follow_the_imports():
    """A module sits one level above the highest package module it imports; a cycle is refused."""
    assert LD.levels({"a": set(), "b": {"a"}, "c": {"a", "b"}, "d": set()}) == {"a": 0, "b": 1, "c": 2, "d": 0}
    with pytest.raises(ValueError, match="cycle"):
        LD.levels({"a": {"b"}, "b": {"a"}})


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
