"""Stage ``frames``: probe the source video and extract the selected frames as lossless PNGs (source indices kept)."""

from __future__ import annotations

import shutil
from pathlib import Path

from innout_core import video as vio
from innout_core.errors import InnoutError
from innout_core.store import StageRecord, atomic_write_json, hash_file
from tasks.common import StageOutput, VideoJob, config_hash, read_json, run_stage

__all__ = ["STAGE", "frame_selection", "load_frames", "run_frames"]

STAGE = "frames"


def frame_selection(job: VideoJob) -> vio.FrameSelection:
    """The manifest's frame range and the config's fps / max_frames as a :class:`FrameSelection`."""
    fr = job.video.frame_range
    return vio.FrameSelection(start=fr[0] if fr else 0, end=fr[1] if fr else None,
                              fps=job.config.video.fps, max_frames=job.config.video.max_frames)


def _source_hash(path: Path) -> str:
    try:
        return hash_file(path)
    except InnoutError:
        return f"unreadable:{path}"  # the body reports the real problem (missing, directory, ...)


def run_frames(job: VideoJob) -> StageRecord:
    """Extract frames to ``frames/png/frame_<index>.png`` and write ``frames/index.json``.

    ``index.json``: ``{"indices": [source frame index, ...], "fps": "<fraction>", "height": H, "width": W}``.
    """
    src = job.video.path
    sel = frame_selection(job)

    def body(d: Path) -> StageOutput:
        info = vio.probe(src)
        png = d / "png"
        shutil.rmtree(png, ignore_errors=True)  # leftovers of a killed attempt
        frames = vio.extract_frames(src, png, sel)
        if not frames:
            raise InnoutError(f"no frames selected (video has {info.frame_count}; selection {sel.model_dump()})",
                              path=src)
        atomic_write_json(d / "index.json", {"indices": [f.index for f in frames], "fps": info.fps_fraction,
                                             "height": info.height, "width": info.width})
        return StageOutput({"frames": "png", "index": "index.json"},
                           {"n_frames": len(frames), "source_frames": info.frame_count, "fps": info.fps})

    return run_stage(job, STAGE, [_source_hash(src)], config_hash(sel), body)


def load_frames(job: VideoJob) -> tuple[list[int], list[Path], str]:
    """(source indices, PNG paths, fps fraction) of the extracted frames."""
    d = job.stage_dir(STAGE)
    idx = read_json(d / "index.json")
    paths = [d / "png" / vio.frame_name(i) for i in idx["indices"]]
    return list(idx["indices"]), paths, str(idx["fps"])
