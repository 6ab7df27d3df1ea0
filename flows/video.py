"""The ``video`` flow: one video through every stage for every configured method, variant and mode.

:func:`process_video` is the unit the dataset flow fans out (one Dask task per video, holding one GPU); it calls
each stage as a Prefect task. A failed stage stops only the branches that need it (a failed W baseline does not
stop In-N-Out); metrics and result videos are made for the branches that finished. The video ends failed when
any stage failed, after every other branch has run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from prefect import flow, get_run_logger

from flows.plan import Branch, branches
from flows.precheck import make_job  # noqa: F401 - re-exported
from tasks.plan import REQUIRES, missing_modules  # noqa: F401 - re-exported
from innout_core.config import PipelineConfig, load_config
from innout_core.errors import StageError
from tasks.common import VideoJob
from tasks.prefect_tasks import stage_task

__all__ = ["make_job", "process_video", "runnable_branches", "video_flow"]

def runnable_branches(cfg: PipelineConfig, job: VideoJob) -> tuple[list[Branch], dict[str, list[str]]]:
    """Branches whose stages' modules exist, and for the others the missing modules by branch key."""
    ok, skipped = [], {}
    for b in branches(cfg, job.video):
        miss = sorted({m for s in b.stages for m in missing_modules(s)})
        (skipped.__setitem__(b.key, miss) if miss else ok.append(b))
    return ok, skipped


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

    attach_run_log(job.run_dir)  # this worker's records (a failure's traceback too) go to the run log
    cfg = job.config
    torch.set_num_threads(max(1, int(os.environ.get("INNOUT_THREADS", cfg.dask.threads_per_worker))))
    for _pass in range(2):  # a second pass when a stage found an upstream output damaged (marked to redo)
        failed, ok_branches = _stages_pass(job, cfg)
        if not any(getattr(e, "kind", "") == "DamagedOutputError" for e in failed.values()):
            break
    _, skipped = runnable_branches(cfg, job)
    if failed:
        first = next(iter(failed.values()))
        raise StageError(f"{len(failed)} stage(s) failed: {', '.join(failed)}; first: {first.message}",
                         path=first.path)
    return {"video": job.id, "status": "done", "branches": [b.key for b in ok_branches], "skipped": skipped}


def _stages_pass(job: VideoJob, cfg: PipelineConfig) -> tuple[dict[str, StageError], list[Branch]]:
    """Call every stage once in order (done ones skip); returns the failed stages and the finished branches."""
    from tasks import encode, metrics

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
    ready, _ = runnable_branches(cfg, job)
    head = ["frames"] + (["face"] if not missing_modules("face") else [])
    if all(call(s, *_split(_runner(s, None))) for s in head) and "face" in head:
        for b in ready:
            if all(call(s, *_split(_runner(s, b))) for s in b.stages):
                ok_branches.append(b)
        if not missing_modules("metrics"):
            call("metrics", metrics.run_metrics, ok_branches)
        if cfg.video.encode:
            call("encode", encode.run_encode, ok_branches)
    return failed, ok_branches


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
