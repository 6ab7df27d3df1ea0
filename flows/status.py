"""Run status from the run directory alone (the system of record): per video, per stage, with failure reasons.

Light on purpose (no PyTorch, Prefect or Dask import): ``innout status`` answers in well under two seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flows.lock import lock_held
from innout_core.config import Manifest, ManifestVideo, PipelineConfig, load_manifest
from innout_core.errors import BadInputError
from innout_core.store import read_record, run_yaml_path, stage_dir, verify_outputs, video_ids
from tasks.plan import planned_stages

__all__ = ["read_run", "run_entries", "run_status", "failed_videos"]


def read_run(run_dir: str | Path) -> tuple[PipelineConfig, Path, dict[str, Any]]:
    """(config, manifest path, whole run.yaml) of a run directory."""
    p = run_yaml_path(run_dir)
    if not p.is_file():
        raise BadInputError("not a run directory (no run.yaml): give the directory `innout run` wrote", path=run_dir)
    try:
        doc = yaml.safe_load(p.read_text("utf-8"))
        return PipelineConfig.model_validate(doc["pipeline"]), Path(doc["manifest"]), doc
    except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError) as err:
        raise BadInputError(f"run.yaml is damaged or unreadable ({type(err).__name__}); re-run `innout run "
                            "MANIFEST --run-dir` on this directory to rewrite it", path=p) from err


def run_entries(run_dir: str | Path, manifest_path: Path) -> list[ManifestVideo]:
    """The manifest's videos, or (manifest moved) one entry per video directory of the run."""
    try:
        return list(load_manifest(manifest_path).videos)
    except BadInputError:
        return list(Manifest(name=Path(run_dir).name, videos=[ManifestVideo(id=v, path=Path(v))
                                                              for v in video_ids(run_dir)] or
                             [ManifestVideo(id="none", path=Path("none"))]).videos)


def run_status(run_dir: str | Path) -> dict[str, Any]:
    """``{"run", "videos": {id: {"status", "stages": {stage: status}, "error": {...} | None}}, "counts"}``.

    Stage status: its record's, except ``damaged`` for a done record whose outputs are missing or not their
    recorded size (sizes only: ``innout verify`` checks every hash). A video is ``failed`` when any stage failed,
    ``damaged`` when a done stage's outputs do not match, ``running`` when a stage is running while a command holds
    the run's lock, ``interrupted`` when a stage says running and no command holds the lock (the command was
    killed), ``done`` when every planned stage is done, else ``pending``.
    """
    run = Path(run_dir)
    cfg, manifest_path, _ = read_run(run)
    entries = [e for e in run_entries(run, manifest_path) if e.id != "none"]
    held: bool | None = None
    videos: dict[str, Any] = {}
    for entry in entries:
        stages: dict[str, str] = {}
        error = damage = None
        for s in planned_stages(cfg, entry):
            d = stage_dir(run, entry.id, s)
            rec = read_record(d)
            st = rec.status if rec else "pending"
            if rec is not None and st == "done" and (problem := verify_outputs(d, rec, "size")) is not None:
                st = "damaged"
                damage = damage or {"file": str(problem.path), "stage": s, "kind": "DamagedOutputError",
                                    "message": f"{problem.problem}: `innout run` / `innout retry` redoes the stage"}
            stages[s] = st
            if rec and rec.status == "failed" and error is None and rec.error is not None:
                error = rec.error.model_dump()
        vals = set(stages.values())
        if "running" in vals and held is None:
            held = lock_held(run)
        status = ("failed" if "failed" in vals else "damaged" if "damaged" in vals else
                  ("running" if held else "interrupted") if "running" in vals else
                  "done" if vals == {"done"} else "pending")
        videos[entry.id] = {"status": status, "stages": stages, "error": error or damage}
    counts: dict[str, int] = {}
    for v in videos.values():
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    return {"run": run.name, "run_dir": str(run.resolve()), "videos": videos, "counts": counts}


def failed_videos(run_dir: str | Path) -> list[str]:
    """Ids of videos whose status is not done (failed, damaged, interrupted, pending)."""
    return [k for k, v in run_status(run_dir)["videos"].items() if v["status"] != "done"]
