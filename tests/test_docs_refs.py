"""Citations stay inside the repository: no tracked file points at reading material a clone does not have, and
every ``docs/<file>.md §N`` names a file in ``docs/`` and a numbered heading in it (``## 3.`` / ``### 3.2 ...``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve()
#: folders never scanned when git cannot list the tracked files (a copy without .git)
_UNTRACKED = {".git", ".venv", "__pycache__", ".pytest_cache", "runs", "build", ".cache"}

#: reading material outside the repository (patterns split so this file does not cite what it forbids)
FORBIDDEN = {
    "shared folder": re.compile(r"\.\./" + r"shared\b"),
    "spec folder": re.compile(r"\bspec/" + r"[\w.-]+\.md"),
    "official-code notes": re.compile(r"in-n-out-official-" + r"code\.md"),
    "design/style notes": re.compile(r"\b(?:DESIGN|STYLE)" + r"\.md\b"),
    "bare spec section": re.compile(r"\bspec\s*" + "§", re.IGNORECASE),
}
#: ``docs/<name>.md`` optionally followed by sections: ``§3.2``, ``§1.7, §9``, ``§3.5–3.7``, ``§4–§5``, ``§6 and §8``
DOC_REF = re.compile(
    r"(?<![\w./-])docs/(?P<name>[\w-]+)\.md`*"
    r"(?P<secs>(?:\s*(?:,|/|and)?\s*§\s*\d+(?:\.\d+)*(?:\s*[–-]\s*§?\s*\d+(?:\.\d+)*)?)*)"
)
SECTION_NUMBER = re.compile(r"\d+(?:\.\d+)*")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?(?:\s|$)")


def tracked_files(root: Path = ROOT) -> list[Path]:
    """The repository's tracked text files (``git ls-files``), else every file outside build/venv folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, timeout=60)
        paths = [root / p for p in out.stdout.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        paths = [p for p in root.rglob("*") if not _UNTRACKED & set(p.relative_to(root).parts)]
    return sorted(p for p in paths if p.is_file() and p.resolve() != SELF)


def read_text(path: Path) -> str | None:
    """The file as UTF-8 text, or None for binary files."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def headings(markdown: str) -> set[str]:
    """Section numbers of a markdown file's numbered headings (``## 3. Title`` -> '3', ``### 9.7 X`` -> '9.7')."""
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            found.add(m.group(1))
    return found


def forbidden_hits(text: str) -> list[tuple[int, str]]:
    """(line, what) for every reference to reading material outside the repository."""
    return [(i, what) for i, line in enumerate(text.splitlines(), 1) for what, rx in FORBIDDEN.items()
            if rx.search(line)]


def doc_refs(text: str) -> list[tuple[int, str, list[str]]]:
    """(line, doc name, [section numbers]) for every ``docs/<name>.md`` citation."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        for m in DOC_REF.finditer(line):
            out.append((i, m.group("name"), SECTION_NUMBER.findall(m.group("secs"))))
    return out


def dangling(text: str, docs_dir: Path) -> list[str]:
    """'line: problem' for every citation of a missing docs file or of a section its headings do not have."""
    problems, cache = [], {}
    for line, name, secs in doc_refs(text):
        path = docs_dir / f"{name}.md"
        if name not in cache:
            cache[name] = headings(path.read_text("utf-8")) if path.is_file() else None
        if cache[name] is None:
            problems.append(f"{line}: docs/{name}.md does not exist")
            continue
        problems += [f"{line}: docs/{name}.md has no section {s}" for s in secs if s not in cache[name]]
    return problems


def test_no_reading_material_outside_the_repository() -> None:
    bad = []
    for path in tracked_files():
        text = read_text(path)
        if text is not None:
            bad += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in forbidden_hits(text)]
    assert not bad, "cite docs/<file>.md §N instead:\n" + "\n".join(bad)


def test_doc_citations_resolve() -> None:
    bad, n = [], 0
    for path in tracked_files():
        text = read_text(path)
        if text is None:
            continue
        n += len(doc_refs(text))
        bad += [f"{path.relative_to(ROOT)}:{p}" for p in dangling(text, ROOT / "docs")]
    assert not bad, "dangling citations:\n" + "\n".join(bad)
    assert n > 50  # the code does cite the docs (a broken pattern would find none)


def test_the_three_docs_exist_with_sections() -> None:
    for name, needed in {"design": {"3.1", "3.3"}, "method": {"3.3", "10.7", "12"}, "eg3d": {"9.7", "15.4", "19"}}.items():
        assert needed <= headings((ROOT / "docs" / f"{name}.md").read_text("utf-8")), name


def test_checks_catch_crafted_cases(tmp_path: Path) -> None:
    """The checks fail where they should: old citations, missing files, missing sections."""
    share = "." + "./shared"
    assert [w for _, w in forbidden_hits(f"see {share}/eg3d/reference")] == ["shared folder"]
    assert [w for _, w in forbidden_hits("x (spec " + "§3.3)\n" + '"""Spec ' + '§1.7: crop')] == ["bare spec section"] * 2
    assert forbidden_hits("Layout (DESIGN" + ".md §4)") and forbidden_hits("``spec/eg3d" + ".md`` §15")
    assert forbidden_hits("spec `in-n-out-official-code" + ".md` §5")
    assert not forbidden_hits("docs/design.md §3.1, RunSpec(spec), the spec's identity, /shared/runs/mine")
    (tmp_path / "method.md").write_text("# T\n\n## 3. A\n\n### 3.3 B\n```\n# 9. not a heading\n```\n## 10. C\n")
    assert headings((tmp_path / "method.md").read_text()) == {"3", "3.3", "10"}
    ok = "see `docs/method.md` §3.3, §10 and docs/method.md §3–§10 (docs/method.md §3.3, paper §4.5)"
    assert doc_refs(ok)[0][2] == ["3.3", "10"] and not dangling(ok, tmp_path)
    assert dangling("docs/method.md §3.4", tmp_path) == ["1: docs/method.md has no section 3.4"]
    assert dangling("a\n``docs/method.md`` §3.3–3.7", tmp_path) == ["2: docs/method.md has no section 3.7"]
    assert dangling("docs/method.md §9.", tmp_path) == ["1: docs/method.md has no section 9"]
    assert dangling("docs/nope.md §1", tmp_path) == ["1: docs/nope.md does not exist"]
