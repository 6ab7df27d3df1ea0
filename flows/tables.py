"""The ``tables`` flow: Tables 1-3 and plots of a run from its Parquet files alone (``reports.tables``)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

__all__ = ["make_tables", "tables_flow"]


def make_tables(run_dir: str | Path) -> dict[str, Path]:
    """``reports.tables.write_tables(run_dir)``: name -> written file."""
    from reports.tables import write_tables

    return write_tables(Path(run_dir))


@flow(name="tables", log_prints=True)
def tables_flow(run_dir: str) -> dict[str, str]:
    """Regenerate ``runs/<run>/tables/`` from ``runs/<run>/videos/*/metrics.parquet``."""
    out = make_tables(run_dir)
    get_run_logger().info("wrote %d table files into %s", len(out), Path(run_dir) / "tables")
    return {k: str(v) for k, v in out.items()}
