"""The run's log file: ``runs/<run>/logs/innout.log`` gets the command's innout, Prefect and Dask records."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOGGERS", "run_log"]

#: Loggers whose records go to the run's log file (Prefect's loggers do not propagate to the root logger).
LOGGERS = ("", "prefect", "distributed", "innout")


class _OncePerRecord(logging.Filter):
    """The handler sits on several loggers of one hierarchy: a propagating record reaches it more than once."""

    def __init__(self) -> None:
        super().__init__()
        self._last: logging.LogRecord | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record is self._last:
            return False
        self._last = record
        return True


@contextlib.contextmanager
def run_log(run_dir: str | Path) -> Iterator[Path]:
    """Append the records of ``LOGGERS`` to ``run_dir/logs/innout.log`` while in the block.

    Logger levels are left as the command set them (warnings and errors; everything from INFO with ``--debug``),
    so the file holds what the terminal would, with timestamps, plus what the progress display hides.
    """
    path = Path(run_dir) / "logs" / "innout.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(_OncePerRecord())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in LOGGERS]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield path
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        handler.close()
