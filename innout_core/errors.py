"""One exception family for the whole project.

Every message names the file (when there is one) and the problem in one line, and says what to do when there is
something to do. The command line catches :class:`InnoutError` and prints ``str(err)`` without a traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "InnoutError",
    "BadInputError",
    "MissingWeightsError",
    "CheckpointError",
    "StageError",
    "DamagedOutputError",
]


class InnoutError(Exception):
    """Base class: a one-line, user-facing message."""

    exit_code: int = 1

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class BadInputError(InnoutError):
    """An input file, manifest entry or argument is wrong (exit code 2 at the command line)."""

    exit_code = 2


class MissingWeightsError(InnoutError):
    """Weights a user must bring are not where we looked; the message says what and where to put it."""

    exit_code = 2


class CheckpointError(BadInputError):
    """A checkpoint file is unreadable, unsafe, or does not match the architecture."""


class StageError(InnoutError):
    """A pipeline stage failed for one video; recorded in its stage record, other videos continue."""


class DamagedOutputError(InnoutError):
    """A stage output in the run directory is missing, unreadable or differs from its record: the stage that wrote
    it is redone (with everything downstream) by the next ``innout run`` / ``retry``; not bad input."""
