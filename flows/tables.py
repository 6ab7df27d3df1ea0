"""The ``tables`` flow: Tables 1-3, plots and the HTML report of a run from its run directory alone (``reports``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger

__all__ = ["TablesResult", "make_tables", "tables_flow"]


@dataclass
class TablesResult:
    """What one build wrote (name -> file) and the videos it left out (one line each: video and reason)."""

    written: dict[str, Path] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)


def make_tables(run_dir: str | Path) -> TablesResult:
    """Tables 1-3 and plots (``reports.tables.write_tables``) and the HTML report (``reports.html.write_report``),
    from the run directory alone. Every readable video is tabulated; missing or unreadable ``metrics.parquet``
    files are listed in ``left_out`` (and in the tables' notes and the report)."""
    from reports.html import write_report
    from reports.runmetrics import collect_metrics
    from reports.tables import write_tables

    metrics = collect_metrics(Path(run_dir))
    out = write_tables(Path(run_dir), metrics)
    out["report/index.html"] = write_report(Path(run_dir), metrics)
    return TablesResult(out, [v.note() for v in metrics.left_out])


@flow(name="tables", log_prints=True)
def tables_flow(run_dir: str) -> dict[str, str]:
    """Regenerate ``runs/<run>/tables/`` from ``runs/<run>/videos/*/metrics.parquet``; warns for each video left
    out."""
    result = make_tables(run_dir)
    logger = get_run_logger()
    for line in result.left_out:
        logger.warning("%s", line)
    logger.info("wrote %d table files into %s", len(result.written), Path(run_dir) / "tables")
    return {k: str(v) for k, v in result.written.items()}
