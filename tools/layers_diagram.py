"""The package layers and the per-video stage order as a text diagram, read from the source (``python
tools/layers_diagram.py``; ``--write`` replaces the marked block of README.md's layout section).

Imports are read with ``ast`` (every import statement counts, also those inside functions), so the diagram is the
code's, not a description of it: innout_core (the science) < tasks (one stage each) < flows (Prefect + Dask, the
command); reports reads run directories and sits beside tasks. Inside a package a module's level is one more than
the highest level among the package modules it imports (0: none). The stage order is ``tasks.plan``'s for one
preset and one video with user masks. ``tests/test_layers.py`` checks the layers and that the README block is
this script's current output.
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the packages, top layer first; reports sits beside tasks
PACKAGES = ("flows", "tasks", "reports", "innout_core")
BEGIN, END = "<!-- layers:begin -->", "<!-- layers:end -->"
#: the preset whose per-video stage order is drawn (every kind of branch in video mode)
STAGE_PRESET = "official"
WIDTH = 116


def module_name(root: Path, path: Path) -> str:
    """``innout_core/eg3d/camera.py`` -> ``innout_core.eg3d.camera`` (a package's ``__init__`` -> the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    package = module_name(root, path).split(".")
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


def package_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the other modules of ``package`` it imports (names relative to the package, ``__init__`` kept)."""
    files = {module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = {mod for _, mod in imports_of(root, path) if mod in files and mod != name and mod != package}
        graph[name] = deps
    return graph


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """Level of each module: 0 without dependencies, else 1 + the highest level of its dependencies (acyclic)."""
    out: dict[str, int] = {}

    def level(m: str, seen: tuple[str, ...] = ()) -> int:
        if m not in out:
            if m in seen:
                raise ValueError(f"import cycle: {' -> '.join((*seen, m))}")
            out[m] = 1 + max((level(d, (*seen, m)) for d in graph[m]), default=-1)
        return out[m]

    for m in sorted(graph):
        level(m)
    return out


def package_imports(root: Path, package: str) -> list[str]:
    """The other packages of :data:`PACKAGES` that ``package`` imports, in layer order."""
    tops = {mod.split(".")[0] for p in (root / package).rglob("*.py") for _, mod in imports_of(root, p)}
    return [p for p in PACKAGES if p in tops and p != package]


def _wrap(label: str, items: list[str], indent: int) -> list[str]:
    return textwrap.wrap(", ".join(items), WIDTH, initial_indent=label.ljust(indent),
                         subsequent_indent=" " * indent, break_on_hyphens=False)


def layer_lines(root: Path) -> list[str]:
    """Each package (top layer first) with what it imports and its modules by level, highest level first."""
    out = ["Layers (imports point down; reports beside tasks). Per package: the packages it imports, then its modules",
           "by level (a module imports only modules of lower levels of its package; pkg/ = a subpackage's __init__).",
           ""]
    for package in PACKAGES:
        graph = package_graph(root, package)
        lv = levels(graph)
        prefix = package + "."
        subpackages = {module_name(root, p) for p in (root / package).rglob("__init__.py")}
        rel = {m: (m[len(prefix):] + ("/" if m in subpackages else "") if m.startswith(prefix) else "(__init__)")
               for m in graph}
        uses = package_imports(root, package)
        out.append(f"{package}  imports: {', '.join(uses) if uses else '-'}")
        for k in range(max(lv.values()), -1, -1):
            mods = sorted(rel[m] for m in graph if lv[m] == k and rel[m] != "(__init__)")
            if mods:
                out += _wrap(f"  {k:>2}  ", mods, 8)
        out.append("")
    return out


def stage_lines(preset: str = STAGE_PRESET) -> list[str]:
    """The per-video stage order of ``preset`` for a video with user masks: shared stages, then each branch."""
    sys.path.insert(0, str(ROOT))
    from innout_core.config import ManifestVideo, load_config
    from tasks.plan import branches, plan_stages

    cfg = load_config(preset=preset)
    entry = ManifestVideo(id="video", path=Path("video.mp4"), masks=Path("masks.npz"))
    order = plan_stages(cfg, entry)
    out = [f"Per-video stage order (tasks.plan, preset {preset}, a video with user masks; a stage shared by",
           "branches runs once, where it first appears):", ""]
    first = [s for s in order if not any(s in b.stages for b in branches(cfg, entry))]
    head = [s for s in first if order.index(s) < order.index(branches(cfg, entry)[0].stages[0])]
    tail = [s for s in first if s not in head]
    out += _wrap("  all", [" -> ".join(head)], 14)
    for b in branches(cfg, entry):
        out += _wrap(f"  {b.key}", [" -> ".join(b.stages)], 14)
    out += _wrap("  all", [" -> ".join(tail)], 14)
    return out


def diagram(root: Path = ROOT) -> str:
    """The whole block: layers and stage order, as a fenced text block."""
    return "\n".join(["```text", *layer_lines(root), *stage_lines(), "```"]) + "\n"


def readme_block(readme: str) -> str:
    """The text between the markers of README.md (what :func:`diagram` wrote there)."""
    start, end = readme.index(BEGIN) + len(BEGIN) + 1, readme.index(END)
    return readme[start:end]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the marked block of README.md")
    a = ap.parse_args(argv)
    text = diagram()
    if not a.write:
        sys.stdout.write(text)
        return 0
    readme = ROOT / "README.md"
    doc = readme.read_text("utf-8")
    old = readme_block(doc)
    readme.write_text(doc.replace(BEGIN + "\n" + old + END, BEGIN + "\n" + text + END), "utf-8")
    print("README.md layers block " + ("unchanged" if old == text else "updated"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
