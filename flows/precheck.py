"""What runs before the Prefect server and the Dask cluster start, in the command's own process: the run directory,
every selected video's input check, and the check of finished stages' outputs. No PyTorch, Prefect or Dask import
here, so a bad manifest is answered in about a second."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from innout_core.config import Manifest, PipelineConfig, load_manifest, manifest_hash, save_resolved
from innout_core.errors import BadInputError
from tasks.frames import check_input, record_rejected
from tasks.stage import VideoJob
from tasks.verify import Damage, check_video

__all__ = ["PreparedRun", "check_inputs", "check_outputs", "find_bad_inputs", "make_job", "prepare_run",
           "record_bad_inputs"]


class PreparedRun(BaseModel):
    """What a command parsed once and handed to the dataset flow: the manifest (knowing its file and hash) and the
    config. The command that passes one has written ``run.yaml``, checked the inputs and outputs, and holds the
    run directory's lock."""

    manifest: Manifest
    config: PipelineConfig


def make_job(run_dir: Path, manifest: Path | Manifest, video_id: str, cfg: PipelineConfig) -> VideoJob:
    """A :class:`VideoJob` with the manifest entry's paths made absolute (``manifest``: loaded, or its path)."""
    man = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    entry = man.video(video_id)
    entry = entry.model_copy(update={k: man.resolve(getattr(entry, k)) for k in ("path", "masks", "cameras",
                                                                                  "landmarks", "clean")})
    return VideoJob(run_dir=Path(run_dir).resolve(), run_name=Path(run_dir).name, video=entry, config=cfg)


def prepare_run(man: Manifest, run_dir: str | Path, cfg: PipelineConfig) -> Path:
    """Create the run dir and write ``run.yaml`` (resolved config, code version, manifest path + hash)."""
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run, manifest_hash(man), manifest=man.file)
    return run


def _selected(man: Manifest, only: list[str] | None) -> list[str]:
    return [v.id for v in man.videos if only is None or v.id in only]


def find_bad_inputs(man: Manifest, run_dir: str | Path, cfg: PipelineConfig,
                    only: list[str] | None = None) -> dict[str, BadInputError]:
    """``{video id: its input problem}`` for the selected videos that fail :func:`tasks.frames.check_input`
    (writes nothing)."""
    bad: dict[str, BadInputError] = {}
    for vid in _selected(man, only):
        try:
            check_input(make_job(Path(run_dir), man, vid, cfg))
        except BadInputError as err:
            bad[vid] = err
    return bad


def record_bad_inputs(man: Manifest, run_dir: str | Path, cfg: PipelineConfig,
                      bad: dict[str, BadInputError]) -> dict[str, str]:
    """Record each problem of :func:`find_bad_inputs` as the video's failed ``frames`` stage; returns
    ``{video id: one-line error naming the file}``."""
    for vid, err in bad.items():
        record_rejected(make_job(Path(run_dir), man, vid, cfg), err)
    return {vid: f"video {vid!r}: {err}" for vid, err in bad.items()}


def check_inputs(man: Manifest, run_dir: str | Path, cfg: PipelineConfig,
                 only: list[str] | None = None) -> dict[str, str]:
    """Check every selected video before anything starts (:func:`tasks.frames.check_input`: probe, frame range,
    the last selected frames decode, side files) and record each bad one as its failed ``frames`` stage.

    Returns:
        ``{video id: one-line error naming the file}`` for the bad ones, in manifest order.
    """
    return record_bad_inputs(man, run_dir, cfg, find_bad_inputs(man, run_dir, cfg, only))


def check_outputs(man: Manifest, run_dir: str | Path, cfg: PipelineConfig,
                  only: list[str] | None = None) -> list[Damage]:
    """Check the finished stages of every selected video (sizes, and sha256 where cheap) and mark each damaged
    one and everything downstream of it to be redone by this run (the caller holds the run's lock)."""
    out: list[Damage] = []
    for vid in _selected(man, only):
        out += check_video(run_dir, cfg, make_job(Path(run_dir), man, vid, cfg).video, "quick", mark=True)
    return out
