"""Checking a run's stage outputs against their records, and marking what must be redone.

A stage is done only while its outputs match the sizes and sha256 its record lists. :func:`check_video` walks a
video's stages in plan order; a damaged output marks its stage and every stage downstream of it
(:func:`tasks.plan.downstream`) as to-redo, so the next run redoes them. No PyTorch, no Prefect: the command runs
it before the cluster starts, ``innout status`` (sizes only) and ``innout verify`` (every hash) use it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from innout_core.config import ManifestVideo, PipelineConfig
from innout_core.store import OutputProblem, VerifyMode, mark_redo, read_record, stage_dir, verify_outputs
from tasks.plan import downstream, planned_stages

__all__ = ["Damage", "check_video"]


@dataclass
class Damage:
    """One damaged stage of one video: the first bad file, and the done stages redone because of it."""

    video: str
    stage: str
    problem: OutputProblem
    redo: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line naming the file, the problem and what is redone."""
        more = len(self.redo) - 1
        tail = f" and {more} stage(s) downstream" if more > 0 else ""
        return f"video {self.video!r}: {self.problem}; stage {self.stage}{tail} to redo"


def check_video(run_dir: str | Path, cfg: PipelineConfig, entry: ManifestVideo, mode: VerifyMode = "quick",
                mark: bool = True) -> list[Damage]:
    """The damaged done stages of one video, in plan order (each with the done stages it takes down).

    Args:
        mode: ``size``, ``quick`` or ``full`` (:func:`innout_core.store.verify_outputs`).
        mark: write each damaged stage and its done downstream stages as pending (the caller holds the run's lock).
    """
    damages: list[Damage] = []
    redo: set[str] = set()
    for s in planned_stages(cfg, entry):
        d = stage_dir(run_dir, entry.id, s)
        rec = read_record(d)
        if rec is None or rec.status != "done" or s in redo:
            continue
        problem = verify_outputs(d, rec, mode)
        if problem is None:
            continue
        down = [t for t in downstream(cfg, entry, s) if t not in redo]
        taken = [s] + [t for t in down if (r := read_record(stage_dir(run_dir, entry.id, t))) is not None
                       and r.status == "done"]
        damages.append(Damage(entry.id, s, problem, taken))
        redo.update(taken)
        if mark:
            mark_redo(d, f"output damaged: {problem}")
            for t in taken[1:]:
                mark_redo(stage_dir(run_dir, entry.id, t), f"upstream stage {s} redone: {problem}")
    return damages
