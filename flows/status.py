"""Run status from the run directory alone (the system of record): per video, per stage, with failure reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flows.plan import plan_stages
from innout_core.config import Manifest, ManifestVideo, PipelineConfig, load_manifest
from innout_core.errors import BadInputError
from innout_core.store import read_record, run_yaml_path, stage_dir, video_ids

__all__ = ["read_run", "run_status", "failed_videos"]


def read_run(run_dir: str | Path) -> tuple[PipelineConfig, Path, dict[str, Any]]:
    """(config, manifest path, whole run.yaml) of a run directory."""
    p = run_yaml_path(run_dir)
    if not p.is_file():
        raise BadInputError("not a run directory (no run.yaml): give the directory `innout run` wrote", path=run_dir)
    doc = yaml.safe_load(p.read_text("utf-8"))
    return PipelineConfig.model_validate(doc["pipeline"]), Path(doc["manifest"]), doc


def _planned(cfg: PipelineConfig, entry: ManifestVideo) -> list[str]:
    from flows.video import missing_modules

    return [s for s in plan_stages(cfg, entry) if not missing_modules(s)]


def run_status(run_dir: str | Path) -> dict[str, Any]:
    """``{"run", "videos": {id: {"status", "stages": {stage: status}, "error": {...} | None}}, "counts"}``.

    A video is ``failed`` when any stage record says failed, ``done`` when every planned stage is done,
    ``running`` when a stage is running, else ``pending``.
    """
    run = Path(run_dir)
    cfg, manifest_path, _ = read_run(run)
    try:
        man = load_manifest(manifest_path)
        entries = list(man.videos)
    except BadInputError:  # manifest moved: fall back to what the run dir holds
        man = Manifest(name=run.name, videos=[ManifestVideo(id=v, path=Path(v)) for v in video_ids(run)] or
                       [ManifestVideo(id="none", path=Path("none"))])
        entries = [e for e in man.videos if e.id != "none"]
    videos: dict[str, Any] = {}
    for entry in entries:
        stages: dict[str, str] = {}
        error = None
        for s in _planned(cfg, entry):
            rec = read_record(stage_dir(run, entry.id, s))
            stages[s] = rec.status if rec else "pending"
            if rec and rec.status == "failed" and error is None and rec.error is not None:
                error = rec.error.model_dump()
        vals = set(stages.values())
        status = ("failed" if "failed" in vals else "done" if vals == {"done"} else
                  "running" if "running" in vals else "pending")
        videos[entry.id] = {"status": status, "stages": stages, "error": error}
    counts: dict[str, int] = {}
    for v in videos.values():
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    return {"run": run.name, "run_dir": str(run.resolve()), "videos": videos, "counts": counts}


def failed_videos(run_dir: str | Path) -> list[str]:
    """Ids of videos whose status is not done (failed, or interrupted)."""
    return [k for k, v in run_status(run_dir)["videos"].items() if v["status"] != "done"]
