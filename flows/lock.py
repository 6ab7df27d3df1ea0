"""One command per run directory: an exclusive ``fcntl.flock`` on ``runs/<run>/innout.lock``.

``innout run``, ``retry`` and ``demo`` (and the dataset flow of a deployment) hold it while they work; a second one
on the same directory is refused with the holder's pid, command and start time (written into the lock file) and
exits 2. The kernel drops the lock when the holder's last descriptor closes, so it goes away on any exit, SIGKILL
included (the descriptor is close-on-exec: the Prefect server, ffmpeg and Dask's spawned workers never inherit it).
Reading commands (``status``, ``tables``) take no lock. The lock is re-entrant within a process: the command and
the flow it calls share one hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from innout_core.errors import BadInputError, InnoutError

__all__ = ["LOCK_NAME", "RunLockedError", "holder", "lock_held", "run_lock"]

LOCK_NAME = "innout.lock"
#: lock path -> (descriptor, hold count) for the locks this process holds
_HELD: dict[str, list[int]] = {}


class RunLockedError(InnoutError):
    """Another process holds the run directory's lock (exit code 2: nothing was started)."""

    exit_code = 2


def holder(lock_file: str | Path) -> dict[str, object]:
    """What the lock file says about its holder: ``{"pid", "command", "started", "host"}`` (``{}`` if unreadable)."""
    for _ in range(20):  # the holder truncates, then writes: an empty read may come between the two
        with contextlib.suppress(OSError, ValueError):
            text = Path(lock_file).read_text("utf-8")
            if text.strip():
                return dict(json.loads(text))
        time.sleep(0.05)
    return {}


def _describe(info: dict[str, object]) -> str:
    if not info:
        return "another process (the lock file names none)"
    host = f" on {info['host']}" if info.get("host") and info.get("host") != socket.gethostname() else ""
    return f"pid {info.get('pid')}{host} (`{info.get('command')}`, started {info.get('started')})"


def lock_held(run_dir: str | Path) -> bool:
    """Whether a command (this process or another) holds the run directory's lock now; creates nothing."""
    path = Path(run_dir).resolve() / LOCK_NAME
    if str(path) in _HELD:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: no command ever held it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # no flock on this filesystem: nothing can tell
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold the run directory's exclusive lock inside the block (creating the directory when needed).

    Raises:
        RunLockedError: another process holds it; the message names its pid, command and start time.
        BadInputError: the run directory or its lock file cannot be created or opened (permissions, read-only).
    """
    run = Path(run_dir).resolve()
    path = run / LOCK_NAME
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield path
        finally:
            _HELD[key][1] -= 1
        return
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise BadInputError(f"cannot use this run directory ({err.strerror or err}): it must be writable",
                            path=err.filename or run) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockedError(f"run directory is in use by {_describe(holder(path))}; wait for it to finish or "
                             "stop it (`innout status` reads the run meanwhile)", path=run) from None
    except OSError as err:  # e.g. a filesystem without flock support
        os.close(fd)
        raise BadInputError(f"cannot lock the run directory ({err.strerror or err})", path=path) from err
    info = {"pid": os.getpid(), "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": socket.gethostname()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    _HELD[key] = [fd, 1]
    try:
        yield path
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock
