"""What every stage task shares: the per-video job, the skip/record/fail wrapper, tensor files, generators, progress.

A stage body is a plain function ``body(stage_dir) -> StageOutput``; :func:`run_stage` decides whether to run it
(skip when ``stage.json`` says done with matching input and config hashes), writes the running / done / failed
record atomically, and turns every failure into a :class:`~innout_core.errors.StageError` whose message names the
file, the stage and the problem. No maths here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors.torch import load_file, save_file
from torch import Tensor

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.errors import BadInputError, InnoutError, StageError
from innout_core.store import (
    StageFailure,
    StageRecord,
    Timer,
    atomic_path,
    atomic_write_json,
    hash_file,
    hash_json,
    hash_strings,
    is_done,
    read_record,
    stage_dir,
    write_record,
)

__all__ = [
    "PROGRESS_NAME",
    "StageOutput",
    "VideoJob",
    "config_hash",
    "load_generator_cached",
    "load_tensors",
    "output_hash",
    "progress_writer",
    "resolve_device",
    "run_stage",
    "save_tensors",
    "stage_generator",
    "transient",
]

PROGRESS_NAME = "progress.json"
#: Failures that recur for unchanged input and config (not re-run by `innout retry` until the input changes).
_DETERMINISTIC = {"BadInputError", "CheckpointError"}


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


def output_hash(directory: Path, outputs: dict[str, str]) -> str:
    """sha256 over the outputs' bytes (a directory output hashes its files in name order)."""
    parts: list[str] = []
    for name in sorted(outputs):
        p = directory / outputs[name]
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        parts.append(name)
        parts.extend(f"{q.relative_to(directory)}={hash_file(q)}" for q in files)
    return hash_strings(parts)


def transient(exc: BaseException) -> bool:
    """True for errors worth a retry: I/O hiccups and CUDA out-of-memory, not bad input or our own checks."""
    if isinstance(exc, StageError):
        return bool(getattr(exc, "transient", False))
    if isinstance(exc, InnoutError):
        return False
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, (OSError, TimeoutError)) or "out of memory" in str(exc).lower()


def run_stage(
    job: VideoJob, stage: str, inputs: list[str], cfg_hash: str, body: Callable[[Path], StageOutput]
) -> StageRecord:
    """Run ``body`` for one stage unless its record is done with the same hashes; record the outcome atomically.

    Args:
        job: the video.
        stage: stage name (also the stage directory name).
        inputs: upstream output hashes / source file hash; their hash is the record's ``input_hash``.
        cfg_hash: the stage's config hash (:func:`config_hash`).
        body: does the work, writing its outputs (atomically) into the stage dir.
    Returns:
        the ``done`` record (fresh or skipped).
    Raises:
        StageError: with ``.transient`` telling the retry policy whether another attempt may help; the failed
            record (file, stage, message) is written first.
    """
    d = job.stage_dir(stage)
    ih = hash_strings(inputs)
    if is_done(d, ih, cfg_hash):
        rec = read_record(d)
        assert rec is not None
        return rec
    d.mkdir(parents=True, exist_ok=True)
    prev = read_record(d) or StageRecord(stage=stage, video=job.id)
    if (prev.status == "failed" and prev.error is not None and prev.error.kind in _DETERMINISTIC
            and prev.input_hash == ih and prev.config_hash == cfg_hash):
        # bad input, unchanged input and config: it would fail the same way; report the recorded error
        err = StageError(f"video {job.id!r}, stage {stage}: {prev.error.message} (unchanged since the last attempt)",
                         path=prev.error.file)
        err.transient, err.stage = False, stage  # type: ignore[attr-defined]
        raise err
    if prev.input_hash != ih or prev.config_hash != cfg_hash:
        shutil.rmtree(d / "ckpt", ignore_errors=True)  # checkpoints of other inputs/config cannot be resumed
    rec = prev.model_copy(update={"input_hash": ih, "config_hash": cfg_hash, "outputs": {}, "info": {}}).started_now()
    write_record(d, rec)
    timer = Timer()
    try:
        out = body(d)
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised as StageError
        if isinstance(exc, KeyboardInterrupt):
            raise
        file = str(exc.path) if isinstance(exc, InnoutError) and exc.path is not None else str(job.video.path)
        message = exc.message if isinstance(exc, InnoutError) else f"{type(exc).__name__}: {exc}"
        message = " ".join(message.split())  # one line
        failure = StageFailure(file=file, stage=stage, message=message, kind=type(exc).__name__)
        write_record(d, rec.model_copy(update={"status": "failed", "error": failure, "seconds": timer.seconds,
                                               "finished": _now(), "info": {"traceback": _tb(exc)}}))
        err = StageError(f"video {job.id!r}, stage {stage}: {message}", path=file)
        err.transient = transient(exc)  # type: ignore[attr-defined]
        err.stage = stage  # type: ignore[attr-defined]
        raise err from exc
    done = rec.model_copy(
        update={"status": "done", "outputs": out.outputs, "info": out.info, "seconds": timer.seconds,
                "finished": _now(), "output_hash": output_hash(d, out.outputs)}
    )
    write_record(d, done)
    return done


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6))[-4000:]


# --------------------------------------------------------------------------------------------------- tensor files


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Save tensors (moved to CPU, contiguous) as safetensors, atomically."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)
    return path


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Load a safetensors file written by :func:`save_tensors`."""
    if not Path(path).is_file():
        raise BadInputError("stage output missing (re-run the stage)", path=path)
    return load_file(str(path), device=str(device))


# -------------------------------------------------------------------------------------------- generator, seeds


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {name!r} requested but CUDA is not available (set device: cpu)")
    return dev


def stage_generator(job: VideoJob, stage: str, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` seeded from (config seed, video id, stage): independent of which stages were skipped."""
    digest = hashlib.sha256(f"{job.config.seed}/{job.id}/{stage}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


_G_CACHE: dict[tuple[str, str, str], torch.nn.Module] = {}


def load_generator_cached(cfg: PipelineConfig, device: torch.device) -> torch.nn.Module:
    """The frozen generator of the config (a checkpoint, or a named config), loaded once per worker process."""
    key = (cfg.generator, str(cfg.checkpoint or ""), str(device))
    if key not in _G_CACHE:
        if cfg.checkpoint is not None:
            from innout_core.eg3d.checkpoint import load_generator

            G = load_generator(cfg.checkpoint, device=device)
        else:
            from innout_core.eg3d.configs import build_generator

            G = build_generator(cfg.generator).to(device)
        G.eval().requires_grad_(False)
        _G_CACHE[key] = G
    return _G_CACHE[key]


# ------------------------------------------------------------------------------------------------------ progress


def progress_writer(directory: Path, every_s: float = 0.5) -> Callable[[int, int, dict[str, float]], None]:
    """A ``ProgressFn`` that writes ``progress.json`` (step, total, losses, time) at most every ``every_s`` seconds.

    The command line polls these files to draw one progress bar per long stage, on any worker or machine.
    """
    last = [float("-inf")]

    def report(step: int, total: int, losses: dict[str, float]) -> None:
        now = time.monotonic()
        if now - last[0] < every_s and step < total:
            return
        last[0] = now
        safe = {k: float(v) for k, v in losses.items() if isinstance(v, (int, float))}
        atomic_write_json(directory / PROGRESS_NAME, {"step": step, "total": total, "losses": safe, "time": time.time()})

    return report


def read_json(path: Path) -> Any:
    """Read a JSON stage output."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise BadInputError(f"stage output unreadable ({err})", path=path) from err
