"""`innout tables` on a damaged run: tabulates the rest, names the videos left out, exits 1 (0 when none is)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.reports.test_damaged_runs import _damage, _make_run

REPO = Path(__file__).resolve().parents[2]


def _tables(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "tables", str(run)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(run.parent),
                               "PREFECT_HOME": str(run.parent / ".prefect"), "COLUMNS": "200"})


def test_tables_exit_codes(tmp_path):
    run = _make_run(tmp_path)
    ok = _tables(run)
    assert ok.returncode == 0, ok.stderr
    assert "warning" not in ok.stderr and "table1.md" in ok.stderr
    _damage(run)
    bad = _tables(run)
    assert bad.returncode == 1, bad.stderr
    lines = [ln for ln in bad.stderr.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 2 and "video b:" in lines[0] and "video c:" in lines[1], bad.stderr
    assert "Traceback" not in bad.stderr
    assert "videos/c/metrics.parquet is unreadable" in (run / "tables" / "table1.md").read_text()
