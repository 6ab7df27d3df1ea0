"""The stage wrapper without PyTorch: the per-video job, :func:`run_stage` (skip / record / fail) and its output
verification, JSON stage outputs. :mod:`tasks.common` re-exports all of it beside the tensor helpers.

A stage body is a plain function ``body(stage_dir) -> StageOutput``; :func:`run_stage` skips it when ``stage.json``
says done with matching input and config hashes **and** its outputs still match the sizes and sha256 the record
lists (a damaged output is logged in one line naming the file, and the stage redone); otherwise it writes the
running record, runs the body, lists every output file with size and sha256 and writes the done record, all
atomically. A failure becomes a :class:`~innout_core.errors.StageError` naming the file, the stage and the
problem; a failure on an unreadable stage output of this run names that file and marks the stage that wrote it
to be redone. No maths here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.errors import CheckpointError, DamagedOutputError, InnoutError, StageError
from innout_core.store import (
    StageFailure,
    StageRecord,
    Timer,
    hash_json,
    hash_strings,
    list_outputs,
    mark_redo,
    outputs_hash,
    read_record,
    stage_dir,
    verify_outputs,
    video_dir,
    write_record,
)

__all__ = [
    "PROGRESS_NAME",
    "StageOutput",
    "VideoJob",
    "config_hash",
    "owner_stage",
    "read_json",
    "run_stage",
    "transient",
]

PROGRESS_NAME = "progress.json"
#: Failures that recur for unchanged input and config (not re-run by `innout retry` until the input changes).
_DETERMINISTIC = {"BadInputError", "CheckpointError"}
log = logging.getLogger("innout.stage")


@dataclass(frozen=True)
class VideoJob:
    """Everything a worker needs for one video (picklable; paths absolute)."""

    run_dir: Path
    run_name: str
    video: ManifestVideo
    config: PipelineConfig

    @property
    def id(self) -> str:
        return self.video.id

    def stage_dir(self, stage: str) -> Path:
        return stage_dir(self.run_dir, self.video.id, stage)


@dataclass
class StageOutput:
    """What a stage body returns: output files (relative to the stage dir) and small facts for the record."""

    outputs: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)


def config_hash(*parts: Any) -> str:
    """sha256 of configs (pydantic models by their JSON dump) and plain values."""
    return hash_json([p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts])


def transient(exc: BaseException) -> bool:
    """True for errors worth a retry: I/O hiccups and CUDA out-of-memory, not bad input or our own checks."""
    if isinstance(exc, StageError):
        return bool(getattr(exc, "transient", False))
    if isinstance(exc, InnoutError):
        return False
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return True
    return isinstance(exc, (OSError, TimeoutError)) or "out of memory" in str(exc).lower()


def owner_stage(job: VideoJob, path: str | Path) -> Path | None:
    """The stage directory of this video whose record lists ``path`` as an output (None when no record does)."""
    vdir = video_dir(job.run_dir, job.id).resolve()
    p = Path(path).resolve()
    if vdir not in p.parents:
        return None
    for d in sorted(q for q in vdir.iterdir() if q.is_dir()):
        rec = read_record(d)
        if rec is not None and Path(os.path.relpath(p, d)).as_posix() in rec.files:
            return d
    first = vdir / p.relative_to(vdir).parts[0]
    return first if first.is_dir() and read_record(first) is not None else None


def _failure(job: VideoJob, d: Path, exc: BaseException) -> StageFailure:
    """The recorded failure. An error about a file inside this video's run directory is a damaged stage output
    (kind ``DamagedOutputError``, never "bad input"): the stage that wrote it is marked to be redone, or, for the
    stage's own working files (checkpoints), those are removed so that the stage starts over."""
    path = exc.path if isinstance(exc, InnoutError) and exc.path is not None else None
    message = exc.message if isinstance(exc, InnoutError) else f"{type(exc).__name__}: {exc}"
    message = " ".join(message.split())  # one line
    kind = type(exc).__name__
    inside = path is not None and video_dir(job.run_dir, job.id).resolve() in Path(path).resolve().parents
    if isinstance(exc, DamagedOutputError) or inside:  # a file of this run, never the user's input
        kind = "DamagedOutputError"
        owner = owner_stage(job, path) if path is not None else None
        own = owner is not None and owner == d.resolve()
        if owner is not None and not own:
            if mark_redo(owner, f"{path}: {message}"):
                message += f"; stage {owner.name} is redone by the next `innout run` / `innout retry`"
        elif own and isinstance(exc, (DamagedOutputError, CheckpointError)):
            shutil.rmtree(d / "ckpt", ignore_errors=True)
            message += "; its checkpoints were removed: the stage starts over"
    return StageFailure(file=str(path if path is not None else job.video.path), stage=d.name, message=message,
                        kind=kind)


def run_stage(
    job: VideoJob, stage: str, inputs: list[str], cfg_hash: str, body: Callable[[Path], StageOutput]
) -> StageRecord:
    """Run ``body`` for one stage unless its record is done with the same hashes and intact outputs; record the
    outcome atomically.

    Args:
        job: the video.
        stage: stage name (also the stage directory name).
        inputs: upstream output hashes / source file hash; their hash is the record's ``input_hash``.
        cfg_hash: the stage's config hash (:func:`config_hash`).
        body: does the work, writing its outputs (atomically) into the stage dir.
    Returns:
        the ``done`` record (fresh or skipped).
    Raises:
        StageError: with ``.transient`` telling the retry policy whether another attempt may help and ``.kind``
            the recorded failure kind; the failed record (file, stage, message) is written first.
    """
    d = job.stage_dir(stage)
    ih = hash_strings(inputs)
    prev = read_record(d)
    if prev is not None and prev.status == "done" and prev.input_hash == ih and prev.config_hash == cfg_hash:
        problem = verify_outputs(d, prev)
        if problem is None:
            return prev
        log.warning("video %r, stage %s: %s; redoing the stage", job.id, stage, problem)
    d.mkdir(parents=True, exist_ok=True)
    prev = prev or StageRecord(stage=stage, video=job.id)
    if (prev.status == "failed" and prev.error is not None and prev.error.kind in _DETERMINISTIC
            and prev.input_hash == ih and prev.config_hash == cfg_hash):
        # bad input, unchanged input and config: it would fail the same way; report the recorded error
        err = StageError(f"video {job.id!r}, stage {stage}: {prev.error.message} (unchanged since the last attempt)",
                         path=prev.error.file)
        err.transient, err.stage, err.kind = False, stage, prev.error.kind  # type: ignore[attr-defined]
        raise err
    if prev.input_hash != ih or prev.config_hash != cfg_hash:
        shutil.rmtree(d / "ckpt", ignore_errors=True)  # checkpoints of other inputs/config cannot be resumed
    rec = prev.model_copy(update={"input_hash": ih, "config_hash": cfg_hash, "outputs": {}, "files": {},
                                  "info": {}}).started_now()
    write_record(d, rec)
    timer = Timer()
    try:
        out = body(d)
        files = list_outputs(d, out.outputs)  # hashed once, here
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised as StageError
        if isinstance(exc, KeyboardInterrupt):
            raise
        failure = _failure(job, d, exc)
        write_record(d, rec.model_copy(update={"status": "failed", "error": failure, "seconds": timer.seconds,
                                               "finished": _now(), "info": {"traceback": _tb(exc)}}))
        err = StageError(f"video {job.id!r}, stage {stage}: {failure.message}", path=failure.file)
        err.transient = transient(exc) and failure.kind != "DamagedOutputError"  # type: ignore[attr-defined]
        err.stage, err.kind = stage, failure.kind  # type: ignore[attr-defined]
        raise err from exc
    done = rec.model_copy(
        update={"status": "done", "outputs": out.outputs, "info": out.info, "seconds": timer.seconds,
                "finished": _now(), "files": files, "output_hash": outputs_hash(d, out.outputs, files)}
    )
    write_record(d, done)
    return done


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6))[-4000:]


def read_json(path: Path) -> Any:
    """Read a JSON stage output (DamagedOutputError naming the file when it is missing or unreadable)."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise DamagedOutputError(f"stage output unreadable ({type(err).__name__}: {err})", path=path) from err
