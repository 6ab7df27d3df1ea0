"""The stages as Prefect tasks: retries for transient errors only, no Prefect result caching (the run dir is the
system of record), one task run per stage per video so the Prefect UI shows the same states as ``stage.json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from innout_core.config import PipelineConfig
from tasks.common import transient

__all__ = ["retry_on_transient", "stage_task"]


def retry_on_transient(_task: Task, _task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only errors :func:`tasks.common.transient` calls transient."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as exc:  # noqa: BLE001
        return transient(exc)
    return False


def stage_task(fn: Callable[..., Any], name: str, cfg: PipelineConfig) -> Task:
    """Wrap a stage runner ``fn(job, ...) -> StageRecord`` as a Prefect task named ``name``."""
    return task(
        fn,
        name=name,
        task_run_name=name + "[{job.video.id}]",
        retries=cfg.retries,
        retry_delay_seconds=cfg.retry_delay_s,
        retry_condition_fn=retry_on_transient,
        cache_policy=NO_CACHE,
        persist_result=False,
        log_prints=False,
    )
