"""Atomic file writes and file hashes: the bottom layer every module that writes or hashes a file goes through.

A write goes to a temp file in the destination's directory, is fsynced, then moved onto the final name with
:func:`os.replace`, so a crash leaves the previous content (or no file) and never a half-written file under its
final name. No torch here: the run store, the checkpoint formats, the video writer and the reports all use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from innout_core.errors import BadInputError, InnoutError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "hash_file", "is_temp"]


def _new_temp_file(final: Path) -> Path:
    """Create an empty, unique temp file beside ``final`` with the mode any new file gets (0666 minus the umask).

    Not ``tempfile.mkstemp``: its 0600 would survive the rename, so run outputs would be private to their writer.
    """
    for _ in range(100):
        tmp = final.parent / f".{final.stem}.{secrets.token_hex(4)}.tmp{final.suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise InnoutError("could not create a temporary file beside it", path=final)


def is_temp(path: Path) -> bool:
    """Whether ``path`` is a temp file of :func:`atomic_path` (left behind only by a killed writer)."""
    return path.name.startswith(".") and ".tmp" in path.name


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path in the same directory as ``final``; on success ``os.replace`` it onto ``final``.

    On an exception the temp file is removed and ``final`` keeps its previous content (or stays absent). The temp
    name keeps the suffix of ``final`` so libraries that dispatch on it (ffmpeg, OpenCV, pyarrow) still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp_file(final)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise InnoutError("nothing was written to the temporary file", path=final)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in ``chunk``-byte blocks.

    Raises :class:`BadInputError` naming the file when it cannot be read.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except OSError as err:
        raise BadInputError(f"cannot read file ({err.strerror or err})", path=path) from err
    return h.hexdigest()
