"""The run's log file: ``runs/<run>/logs/innout.log`` gets the command's innout, Prefect and Dask records, and
(through :func:`attach_run_log`) those of the worker processes, failed tasks' tracebacks included: the terminal
shows them only with ``--debug``."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from innout_core.errors import BadInputError

__all__ = ["LOGGERS", "attach_run_log", "log_path", "run_log"]

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


def log_path(run_dir: str | Path) -> Path:
    """``runs/<run>/logs/innout.log``."""
    return Path(run_dir) / "logs" / "innout.log"


def _handler(path: Path) -> logging.FileHandler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as err:
        raise BadInputError(f"cannot write the run log ({err.strerror or err}): the run directory must be writable",
                            path=err.filename or path) from err
    handler.addFilter(_OncePerRecord())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    return handler


def _writes_to(path: Path) -> bool:
    return any(isinstance(h, logging.FileHandler) and h.baseFilename == os.path.abspath(path)
               for h in logging.getLogger().handlers)


@contextlib.contextmanager
def run_log(run_dir: str | Path) -> Iterator[Path]:
    """Append the records of ``LOGGERS`` to ``run_dir/logs/innout.log`` while in the block.

    Logger levels are left as the command set them (warnings and errors; everything from INFO with ``--debug``),
    so the file holds what the terminal would, with timestamps, plus what the progress display hides.
    """
    path = log_path(run_dir)
    handler = _handler(path)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield path
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        handler.close()


def attach_run_log(run_dir: str | Path) -> Path:
    """In a worker process: append this process's records of ``LOGGERS`` to the run log for the rest of its life
    (Prefect logs a failed task's traceback after the task function returns). Once per process and run log;
    nothing when the process already writes there (a run in this process)."""
    path = log_path(run_dir)
    if not _writes_to(path):
        handler = _handler(path)
        for name in LOGGERS:
            logging.getLogger(name).addHandler(handler)
    return path
