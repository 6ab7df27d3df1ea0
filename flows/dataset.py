"""The ``dataset`` flow: fan a manifest's videos out over Dask (one task per video), record a run summary.

Clusters (``PipelineConfig.dask``): ``local`` = a ``distributed.LocalCluster`` of worker processes (default);
``cuda`` = ``dask_cuda.LocalCUDACluster`` (one worker per GPU) with a ``GPU`` resource every video task asks for,
so each video holds one GPU; ``address`` = an existing scheduler (SLURM via dask-jobqueue, Kubernetes, ...).
One bad video never stops the others; the flow run ends Failed only after every other video has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from flows.lock import run_lock
from flows.precheck import PreparedRun, check_inputs, check_outputs, make_job, prepare_run
from flows.status import run_status
from flows.video import process_video
from innout_core.config import DaskSettings, Manifest, PipelineConfig, load_config, load_manifest
from innout_core.store import atomic_write_json
from tasks.stage import VideoJob

__all__ = ["check_inputs", "dask_task_runner", "dataset_flow", "dataset_videos", "prepare_run", "retry_failed_flow",
           "video_task"]


def _video_task(fn: Callable[[VideoJob], Any]) -> Any:
    """``fn`` as the per-video Prefect task: named by the video, no result cache or persistence, no retries (the
    stages retry themselves)."""
    return task(fn, name="video", task_run_name="video[{job.video.id}]", cache_policy=NO_CACHE, persist_result=False,
                retries=0)


video_task = _video_task(process_video)


def dask_task_runner(settings: DaskSettings) -> DaskTaskRunner:
    """The DaskTaskRunner for the configured cluster kind."""
    if settings.cluster == "address":
        return DaskTaskRunner(address=settings.address)
    if settings.cluster == "cuda":
        return DaskTaskRunner(cluster_class="dask_cuda.LocalCUDACluster",
                              cluster_kwargs={"threads_per_worker": 1, "resources": {"GPU": 1},
                                              "memory_limit": settings.memory_limit})
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": settings.workers, "threads_per_worker": 1, "processes": True,
                                          "memory_limit": settings.memory_limit, "dashboard_address": ":0",
                                          "silence_logs": 40})


@flow(name="dataset-videos", validate_parameters=False)
def dataset_videos(man: Manifest, run_dir: str, cfg: PipelineConfig, only: list[str] | None = None,
                   rejected: dict[str, str] | None = None, video_fn: Callable[[VideoJob], Any] | None = None) -> Any:
    """Fan the videos out on this flow's task runner (set with ``with_options(task_runner=...)``), one task per
    video running ``video_fn`` (default :func:`flows.video.process_video`)."""
    logger = get_run_logger()
    one_video = video_task if video_fn is None else _video_task(video_fn)
    run = Path(run_dir)
    ids = [v.id for v in man.videos if only is None or v.id in only]
    jobs = [make_job(run, man, vid, cfg) for vid in ids]
    gpu = cfg.dask.cluster == "cuda" or (cfg.dask.cluster == "address" and cfg.device.startswith("cuda"))
    annotations = {"resources": {"GPU": 1}} if gpu else {}
    with dask.annotate(**annotations):
        futures = [one_video.submit(job) for job in jobs]
    for fut in futures:
        fut.wait()
    states = {job.id: fut.state for job, fut in zip(jobs, futures)}
    summary = run_status(run)
    summary["flow_states"] = {k: s.type.value for k, s in states.items()}
    summary["rejected"] = dict(rejected or {})
    atomic_write_json(run / "summary.json", summary)
    bad = [k for k, s in states.items() if not s.is_completed()] + list(rejected or {})
    total = len(ids) + len(rejected or {})
    logger.info("%d/%d videos done", total - len(bad), total)
    if bad:
        return Failed(message=f"{len(bad)} of {total} videos failed: {', '.join(bad)} (see `innout status {run}`)")
    return Completed(message=f"{len(ids)} videos done")


@flow(name="dataset", log_prints=True, validate_parameters=False)
def dataset_flow(manifest: str, run_dir: str, config: str | None = None, preset: str | None = None,
                 workers: int | None = None, only: list[str] | None = None,
                 rejected: dict[str, str] | None = None, prepared: PreparedRun | None = None,
                 task_runner: TaskRunner | None = None, video_fn: Callable[[VideoJob], Any] | None = None) -> Any:
    """Run every video of ``manifest`` (or the ids in ``only``) into ``run_dir`` on the configured Dask cluster.

    This is the deployment entry point (``deployments/prefect.yaml``: ``dataset-run``) and what ``innout run``
    calls. A deployment's run parses the manifest and the config, takes the run directory's lock
    (:mod:`flows.lock`), writes ``run.yaml`` and checks the inputs and finished outputs here. The command did all of
    that already and passes ``prepared`` (the parsed manifest and config), what it ``rejected`` and the ``only``
    videos left to run; it holds the lock. ``task_runner`` and ``video_fn`` replace the configured cluster's runner
    and the per-video function (harnesses: the GPU suite's resource probes).
    Returns the run's final state: Completed, or Failed naming the failed videos.
    """
    if prepared is not None:
        return _run_videos(prepared.manifest, Path(run_dir), prepared.config, only, rejected or {}, task_runner,
                           video_fn)
    man = load_manifest(manifest)
    cfg = load_config(config, preset).with_workers(workers)
    with run_lock(run_dir):
        run = prepare_run(man, run_dir, cfg)
        rejected = check_inputs(man, run, cfg, only)
        only = [v.id for v in man.videos if (only is None or v.id in only) and v.id not in rejected]
        for damage in check_outputs(man, run, cfg, only):
            get_run_logger().warning("%s", damage.line())
        return _run_videos(man, run, cfg, only, rejected, task_runner, video_fn)


def _run_videos(man: Manifest, run: Path, cfg: PipelineConfig, only: list[str] | None, rejected: dict[str, str],
                task_runner: TaskRunner | None = None, video_fn: Callable[[VideoJob], Any] | None = None) -> Any:
    for line in rejected.values():
        get_run_logger().error("bad input: %s", line)
    if only is not None and not only:
        return Failed(message=f"nothing to run: every selected video has bad input (see `innout status {run}`)")
    runner = task_runner if task_runner is not None else dask_task_runner(cfg.dask)
    return dataset_videos.with_options(task_runner=runner)(man, str(run), cfg, only, rejected, video_fn,
                                                           return_state=True)


@flow(name="retry-failed", log_prints=True, validate_parameters=False)
def retry_failed_flow(run_dir: str, workers: int | None = None) -> Any:
    """Re-run the videos of ``run_dir`` that are not done, with the run's saved config (``run.yaml``)."""
    from flows.status import failed_videos, read_run

    _, manifest, _ = read_run(run_dir)
    todo = failed_videos(run_dir)
    if not todo:
        return Completed(message="nothing to retry")
    return dataset_flow(str(manifest), str(run_dir), config=str(Path(run_dir) / "run.yaml"), workers=workers,
                        only=todo, return_state=True)
