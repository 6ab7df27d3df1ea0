"""Stage ``frames``: probe the source (a video file or a frames directory) and extract the selected frames as
lossless PNGs (source indices kept).

:func:`check_input` is everything about a manifest entry that can be checked quickly (probe, range, the last
selected frames decode, side files; no PyTorch); the command runs it
for every video before the Prefect server and the Dask cluster start, and :func:`record_rejected` writes what it
found as the video's failed ``frames`` stage (so ``innout status`` shows it and ``innout retry`` re-checks it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from innout_core import video as vio
from innout_core.errors import BadInputError, InnoutError, StageError
from innout_core.store import StageRecord, atomic_write_json, hash_file, hash_strings
from tasks.stage import StageOutput, VideoJob, config_hash, read_json, run_stage

__all__ = ["STAGE", "check_input", "frame_selection", "load_frames", "record_rejected", "run_frames"]

STAGE = "frames"
#: Manifest entry files besides the source, checked to exist before anything runs.
SIDE_FILES = ("cameras", "landmarks", "masks", "clean")


def frame_selection(job: VideoJob) -> vio.FrameSelection:
    """The manifest's frame range and the config's fps / max_frames as a :class:`FrameSelection`."""
    fr = job.video.frame_range
    return vio.FrameSelection(start=fr[0] if fr else 0, end=fr[1] if fr else None,
                              fps=job.config.video.fps, max_frames=job.config.video.max_frames)


def _check_selection(info: vio.VideoInfo, sel: vio.FrameSelection, src: Path) -> list[int]:
    """Source indices the selection keeps; BadInputError when the frame range is not inside the video."""
    n = info.frame_count
    if sel.start >= n or (sel.end is not None and sel.end > n):
        raise BadInputError(f"frame_range [{sel.start}, {sel.end}) is past the end: the source has {n} frames "
                            f"(indices 0..{n - 1})", path=src)
    wanted = vio.select_indices(info, sel)
    if not wanted:
        raise BadInputError(f"no frames selected (source has {n}; selection {sel.model_dump()})", path=src)
    return wanted


def check_input(job: VideoJob) -> vio.VideoInfo:
    """Check a video entry in about a second: the source exists, is non-empty and readable by ffprobe with a video
    stream (or is a frames directory whose first image decodes), the frame range lies inside it and keeps a frame,
    the last frames of that range decode (a truncated file fails here, not minutes into the run), and the entry's
    cameras / landmarks / masks / clean files exist.

    Raises:
        BadInputError: the first problem, naming the file.
    """
    src = job.video.path
    info = vio.probe(src)
    vio.check_decodes(src, info, _check_selection(info, frame_selection(job), src))
    for name in SIDE_FILES:
        p = getattr(job.video, name)
        if p is not None and not Path(p).exists():
            raise BadInputError(f"{name} file not found (manifest entry {job.id!r})", path=p)
    return info


def _source_hash(path: Path) -> str:
    try:
        return hash_file(path) if not path.is_dir() else hash_strings(
            [f"{p.name}={hash_file(p)}" for p in vio.frame_images(path)])
    except (InnoutError, OSError):
        return f"unreadable:{path}"  # the body reports the real problem (missing, unreadable, ...)


def record_rejected(job: VideoJob, err: BadInputError) -> None:
    """Record ``err`` (found by :func:`check_input`) as the video's failed ``frames`` stage, as the stage itself
    would have. Its input hash covers the side files' presence, so fixing any of them lets the stage run again;
    an unchanged rejection leaves the record (and its attempt count) as it was."""
    src, sel = job.video.path, frame_selection(job)
    sides = [f"{k}:{Path(p).exists()}" for k in SIDE_FILES if (p := getattr(job.video, k)) is not None]

    def body(_d: Path) -> StageOutput:
        raise err

    try:
        run_stage(job, STAGE, [_source_hash(src), "checked before the run", *sides], config_hash(sel), body)
    except StageError:
        pass


def _copy_frames(src: Path, png: Path, info: vio.VideoInfo, wanted: list[int]) -> None:
    """Frames ``wanted`` of a frames directory as ``frame_<index>.png`` (one image in memory at a time)."""
    images = vio.frame_images(src)
    for i in wanted:
        arr = vio.to_uint8_frames([images[i]])
        if arr.shape[1:3] != (info.height, info.width):
            raise BadInputError(f"size {arr.shape[2]}x{arr.shape[1]} differs from the first frame's "
                                f"{info.width}x{info.height}", path=images[i])
        vio.write_frames(arr, png, [i])


def run_frames(job: VideoJob) -> StageRecord:
    """Extract frames to ``frames/png/frame_<index>.png`` and write ``frames/index.json``.

    ``index.json``: ``{"indices": [source frame index, ...], "fps": "<fraction>", "height": H, "width": W}``.
    """
    src = job.video.path
    sel = frame_selection(job)

    def body(d: Path) -> StageOutput:
        info = vio.probe(src)
        wanted = _check_selection(info, sel, src)
        png = d / "png"
        shutil.rmtree(png, ignore_errors=True)  # leftovers of a killed attempt
        if src.is_dir():
            _copy_frames(src, png, info, wanted)
            indices = wanted
        else:
            indices = [f.index for f in vio.extract_frames(src, png, sel)]
        atomic_write_json(d / "index.json", {"indices": indices, "fps": info.fps_fraction,
                                             "height": info.height, "width": info.width})
        return StageOutput({"frames": "png", "index": "index.json"},
                           {"n_frames": len(indices), "source_frames": info.frame_count, "fps": info.fps})

    return run_stage(job, STAGE, [_source_hash(src)], config_hash(sel), body)


def load_frames(job: VideoJob) -> tuple[list[int], list[Path], str]:
    """(source indices, PNG paths, fps fraction) of the extracted frames."""
    d = job.stage_dir(STAGE)
    idx = read_json(d / "index.json")
    paths = [d / "png" / vio.frame_name(i) for i in idx["indices"]]
    return list(idx["indices"]), paths, str(idx["fps"])
