"""The ``video`` flow: one video through every stage for every configured method, variant and mode.

:func:`process_video` is the unit the dataset flow fans out (one Dask task per video, holding one GPU); it calls
each stage as a Prefect task. A failed stage stops only the branches that need it (a failed W baseline does not
stop In-N-Out); metrics and result videos are made for the branches that finished. The video ends failed when
any stage failed, after every other branch has run.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from prefect import flow, get_run_logger

from flows.plan import Branch, branches
from innout_core.config import Manifest, PipelineConfig, load_config, load_manifest
from innout_core.errors import StageError
from tasks.common import VideoJob
from tasks.prefect_tasks import stage_task

__all__ = ["make_job", "process_video", "runnable_branches", "video_flow"]

#: innout_core modules each stage kind needs; a branch whose module is not installed is skipped and reported.
REQUIRES = {
    "face": ("innout_core.face.preprocess",),
    "invert": ("innout_core.inversion",),
    "masks": ("innout_core.auto_masks", "innout_core.joint"),
    "stage-a": ("innout_core.joint",),
    "stage-b": ("innout_core.sr_tuning",),
    "edits": ("innout_core.edit",),
    "metrics": ("innout_core.metrics",),
}


def _kind(stage: str) -> str:
    for k in REQUIRES:
        if stage.startswith(k):
            return k
    return stage


def missing_modules(stage: str) -> list[str]:
    """innout_core modules a stage needs that are not importable here."""
    return [m for m in REQUIRES.get(_kind(stage), ()) if importlib.util.find_spec(m) is None]


def runnable_branches(cfg: PipelineConfig, job: VideoJob) -> tuple[list[Branch], dict[str, list[str]]]:
    """Branches whose stages' modules exist, and for the others the missing modules by branch key."""
    ok, skipped = [], {}
    for b in branches(cfg, job.video):
        miss = sorted({m for s in b.stages for m in missing_modules(s)})
        (skipped.__setitem__(b.key, miss) if miss else ok.append(b))
    return ok, skipped


def make_job(run_dir: Path, manifest: Path | Manifest, video_id: str, cfg: PipelineConfig) -> VideoJob:
    """A :class:`VideoJob` with the manifest entry's paths made absolute (``manifest``: its path, or loaded)."""
    man = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    entry = man.video(video_id)
    entry = entry.model_copy(update={k: man.resolve(getattr(entry, k)) for k in ("path", "masks", "cameras",
                                                                                  "landmarks", "clean")})
    return VideoJob(run_dir=Path(run_dir).resolve(), run_name=Path(run_dir).name, video=entry, config=cfg)


def _runner(stage: str, branch: Branch | None):
    from tasks import edits, encode, face, frames, innout, inversion, masks, metrics

    if stage == "frames":
        return frames.run_frames, ()
    if stage == "face":
        return face.run_face, ()
    assert branch is not None
    if stage.startswith("invert-"):
        if branch.method != "innout":
            return inversion.run_invert, (branch.method, branch.mode)
        masked = None if stage == inversion.invert_stage("w+", branch.mode) else branch.variant  # In-N-Out's start
        return inversion.run_invert, ("w+", branch.mode, masked)
    if stage.startswith("masks-"):
        return masks.run_auto_masks, (branch.mode,)
    if stage.startswith("stage-a-"):
        return innout.run_stage_a, (branch.variant, branch.mode)
    if stage.startswith("stage-b-"):
        return innout.run_stage_b, (branch.variant, branch.mode)
    if stage.startswith("edits-"):
        return edits.run_edits_stage, (branch,)
    raise KeyError(stage)


def process_video(job: VideoJob) -> dict[str, Any]:
    """Run every stage of one video (stage tasks skip what is already done). Raises StageError if any failed.

    Returns:
        ``{"video": id, "status": "done", "branches": [keys], "skipped": {key: [missing modules]}}``.
    """
    from flows.runlog import attach_run_log
    from tasks import encode, metrics

    attach_run_log(job.run_dir)  # this worker's records (a failure's traceback too) go to the run log
    cfg = job.config
    torch.set_num_threads(max(1, int(os.environ.get("INNOUT_THREADS", cfg.dask.threads_per_worker))))
    failed: dict[str, StageError] = {}
    finished: set[str] = set()

    def call(stage: str, fn, *args) -> bool:
        if stage in failed:
            return False
        if stage in finished:
            return True
        try:
            stage_task(fn, stage, cfg)(job, *args)
        except StageError as err:
            failed[stage] = err
            return False
        finished.add(stage)
        return True

    ok_branches: list[Branch] = []
    ready, skipped = runnable_branches(cfg, job)
    head = ["frames"] + (["face"] if not missing_modules("face") else [])
    if all(call(s, *_split(_runner(s, None))) for s in head) and "face" in head:
        for b in ready:
            if all(call(s, *_split(_runner(s, b))) for s in b.stages):
                ok_branches.append(b)
        if not missing_modules("metrics"):
            call("metrics", metrics.run_metrics, ok_branches)
        if cfg.video.encode:
            call("encode", encode.run_encode, ok_branches)
    if failed:
        first = next(iter(failed.values()))
        raise StageError(f"{len(failed)} stage(s) failed: {', '.join(failed)}; first: {first.message}",
                         path=first.path)
    return {"video": job.id, "status": "done", "branches": [b.key for b in ok_branches], "skipped": skipped}


def _split(pair):
    fn, args = pair
    return (fn, *args)


@flow(name="video", log_prints=True)
def video_flow(manifest: str, video_id: str, run_dir: str, config: str | None = None,
               preset: str | None = None) -> dict[str, Any]:
    """One video of a manifest through all stages, in this process (no Dask)."""
    cfg = load_config(config, preset)
    job = make_job(Path(run_dir), Path(manifest), video_id, cfg)
    out = process_video(job)
    get_run_logger().info("video %s done: %s", video_id, out["branches"])
    return out
