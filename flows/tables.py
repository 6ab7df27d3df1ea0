"""The ``tables`` flow: Tables 1-3, plots and the HTML report of a run from its run directory alone (``reports``)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

__all__ = ["make_tables", "tables_flow"]


def make_tables(run_dir: str | Path) -> dict[str, Path]:
    """Tables 1-3 and plots (``reports.tables.write_tables``) and the HTML report (``reports.html.write_report``),
    from the run directory alone; returns name -> written file."""
    from reports.html import write_report
    from reports.tables import write_tables

    out = write_tables(Path(run_dir))
    out["report/index.html"] = write_report(Path(run_dir))
    return out


@flow(name="tables", log_prints=True)
def tables_flow(run_dir: str) -> dict[str, str]:
    """Regenerate ``runs/<run>/tables/`` from ``runs/<run>/videos/*/metrics.parquet``."""
    out = make_tables(run_dir)
    get_run_logger().info("wrote %d table files into %s", len(out), Path(run_dir) / "tables")
    return {k: str(v) for k, v in out.items()}
