"""Video in and out through ffmpeg (ffmpeg-python builds the commands; the system ``ffmpeg``/``ffprobe`` run them).

- :func:`probe` (:mod:`innout_core.video_probe`, re-exported here) reads a file's frame count, frame rate, display
  size, rotation and whether its frame rate varies, and turns every kind of unusable input into a one-line
  :class:`~innout_core.errors.BadInputError` naming the file.
- :func:`extract_frames` decodes every frame exactly once (``-fps_mode passthrough``, rotation applied), keeps the
  frames selected by a :class:`FrameSelection` and writes them as lossless PNGs named by their **source index**
  (``frame_000123.png``; the number widens past six digits, there is no digit limit). It returns the source index
  with each path, and that index is the frame id for the whole pipeline.
- :func:`encode_video` writes H.264 mp4 (yuv420p, ``+faststart``) from a tensor ``[T, 3, H, W]`` in [-1, 1], uint8
  arrays ``[T, H, W, 3]`` or a list of image paths. yuv420p needs even sizes: by default an odd width/height is
  **padded** by one replicated edge pixel on the right/bottom (no image pixel is lost; the top-left ``H x W`` of the
  decoded video is the input); ``even="crop"`` drops the last column/row instead. Encodes go to a temporary file in
  the destination folder and are moved into place with :func:`os.replace`, so a failed encode leaves no file.
- :func:`side_by_side` builds comparison frames (input | reconstruction | edit, with optional labels).

Frame selection never duplicates frames: an fps above the source rate keeps every frame.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import ffmpeg
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # torch and cv2 are imported where used: probing and checking a video needs neither
    from torch import Tensor

from innout_core.errors import BadInputError, StageError
from innout_core.io import atomic_path
from innout_core.video_probe import (  # re-exported: the video API has always offered them
    VideoInfo,
    _imread_rgb,
    _last_line,
    ffmpeg_exe,
    ffprobe_exe,
    frame_images,
    probe,
)

__all__ = [
    "VideoInfo",
    "FrameSelection",
    "ExtractedFrame",
    "EncodeConfig",
    "ffmpeg_exe",
    "ffprobe_exe",
    "probe",
    "check_decodes",
    "frame_images",
    "iter_frames",
    "select_indices",
    "extract_frames",
    "list_frames",
    "frame_name",
    "read_frames",
    "write_frames",
    "to_uint8_frames",
    "encode_video",
    "side_by_side",
    "encode_side_by_side",
]

FRAME_PREFIX = "frame_"
_FRAME_RE = re.compile(r"^frame_(\d+)\.png$")


# ------------------------------------------------------------------------------------------------ decode


class FrameSelection(BaseModel):
    """Which source frames to keep. Applied in this order: index range, then fps, then max_frames."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(0, ge=0, description="first source frame index kept (0-based, inclusive)")
    end: int | None = Field(None, ge=0, description="source frame index where selection stops (exclusive); None = end")
    fps: float | None = Field(
        None, gt=0, description="target rate in frames/s; keeps the first frame of each 1/fps slot, never duplicates"
    )
    max_frames: int | None = Field(None, ge=1, description="keep at most this many frames (the first ones)")


@dataclass(frozen=True)
class ExtractedFrame:
    """One extracted frame: its source index (decode order, 0-based), time in seconds and PNG path."""

    index: int
    time: float
    path: Path


def select_indices(info: VideoInfo, selection: FrameSelection | None = None) -> list[int]:
    """Source frame indices a :class:`FrameSelection` keeps for a probed video (sorted, unique)."""
    sel = selection or FrameSelection()
    end = info.frame_count if sel.end is None else min(sel.end, info.frame_count)
    indices = list(range(min(sel.start, end), end))
    if sel.fps is not None and indices:
        t0 = info.frame_times[indices[0]]
        kept: list[int] = []
        last_slot = -1
        for i in indices:
            slot = math.floor((info.frame_times[i] - t0) * sel.fps + 1e-6)
            if slot > last_slot:
                kept.append(i)
                last_slot = slot
        indices = kept
    if sel.max_frames is not None:
        indices = indices[: sel.max_frames]
    return indices


def iter_frames(path: str | Path, info: VideoInfo | None = None, stop: int | None = None) -> Iterator[
        tuple[int, np.ndarray]]:
    """Decode a video frame by frame: yields ``(source_index, rgb)`` with ``rgb`` uint8 ``[H, W, 3]``.

    Every decoded frame is yielded exactly once in presentation order (``-fps_mode passthrough``), rotation
    metadata applied. ``stop`` ends decoding before that source index.

    Raises:
        BadInputError: the stream cannot be decoded (corrupt data or an unsupported codec).
    """
    path = Path(path)
    info = info or probe(path)
    h, w = info.height, info.width
    frame_bytes = h * w * 3
    args = (
        ffmpeg.input(str(path))
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", an=None, sn=None, dn=None)
        .global_args("-nostdin", "-v", "error")
        .compile(cmd=ffmpeg_exe())
    )
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        n = 0
        stopped = False
        try:
            while stop is None or n < stop:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                yield n, np.frombuffer(buf, np.uint8).reshape(h, w, 3)
                n += 1
            else:
                stopped = True
        finally:
            proc.stdout.close()
            if stopped or proc.poll() is None:
                proc.kill()
            rc = proc.wait()
        if not stopped and n == 0:
            err.seek(0)
            raise BadInputError(
                f"no frame could be decoded ({_last_line(err.read())}): corrupt data or codec '{info.codec}' "
                "unsupported by this ffmpeg",
                path,
            )
        if not stopped and rc != 0 and n < info.frame_count:
            err.seek(0)
            raise BadInputError(
                f"decoding stopped after {n} of {info.frame_count} frames ({_last_line(err.read())}): the file is "
                "truncated or corrupt",
                path,
            )


def check_decodes(path: str | Path, info: VideoInfo, indices: Sequence[int], tail: int = 3) -> None:
    """Decode the last ``tail`` frames of ``indices`` (source indices, sorted) to catch a truncated or damaged end
    before a run starts: one keyframe seek and a few decoded frames, so it costs about the same for any length.

    Raises:
        BadInputError: those frames do not decode (the file is cut short or its end is corrupt), naming the file.
    """
    path = Path(path)
    if not indices:
        return
    last = int(indices[-1])
    first = max(0, last - tail + 1)
    if path.is_dir():
        images = frame_images(path)
        for i in range(first, last + 1):
            _imread_rgb(images[i])
        return
    times = info.frame_times
    step = (times[1] - times[0]) if len(times) > 1 else 1.0 / max(info.fps, 1e-6)
    start = max(0.0, times[first] - step / 2) if first < len(times) else 0.0
    want = last - first + 1
    args = [ffmpeg_exe(), "-nostdin", "-v", "error", "-ss", f"{start:.6f}", "-i", str(path), "-map", "0:v:0",
            "-frames:v", str(want), "-f", "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "pipe:"]
    try:
        out = subprocess.run(args, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise BadInputError(f"decoding frames {first}..{last} took over 120 s: the file is damaged", path) from None
    got = len(out.stdout) // (info.width * info.height * 3)
    if got < want:
        raise BadInputError(f"frames {first}..{last} of the selected range do not decode ({got} of {want}; "
                            f"{_last_line(out.stderr) or 'no error message'}): the file is truncated or corrupt",
                            path)


def frame_name(index: int) -> str:
    """PNG name for a source frame index: ``frame_000123.png`` (six digits minimum, widens past 999999)."""
    return f"{FRAME_PREFIX}{index:06d}.png"


def _atomic_imwrite(path: Path, rgb: np.ndarray) -> None:
    import cv2

    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
            raise StageError("OpenCV could not write the PNG (disk full or bad folder?)", path)


def extract_frames(
    path: str | Path, out_dir: str | Path, selection: FrameSelection | None = None
) -> list[ExtractedFrame]:
    """Decode ``path`` and write the selected frames to ``out_dir`` as lossless RGB PNGs (atomic per file).

    Returns:
        one :class:`ExtractedFrame` per kept frame, in source order, carrying the **source index** (the frame id
        used by every later stage) and its presentation time in seconds.
    """
    info = probe(path)
    wanted = select_indices(info, selection)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted_set = set(wanted)
    result: list[ExtractedFrame] = []
    stop = (wanted[-1] + 1) if wanted else 0
    if not wanted:
        return result
    for index, rgb in iter_frames(path, info, stop=stop):
        if index in wanted_set:
            target = out / frame_name(index)
            _atomic_imwrite(target, rgb)
            result.append(ExtractedFrame(index=index, time=info.frame_times[index], path=target))
    return result


def list_frames(folder: str | Path) -> list[tuple[int, Path]]:
    """``(source_index, path)`` of every ``frame_<index>.png`` in ``folder``, sorted numerically by index."""
    found = []
    for p in Path(folder).iterdir():
        m = _FRAME_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


# ------------------------------------------------------------------------------------------------ frames <-> tensors


def read_frames(paths: Sequence[str | Path]) -> Tensor:
    """Load images as one float32 tensor ``[T, 3, H, W]`` in [-1, 1] (RGB; all images must share one size)."""
    import torch

    if not paths:
        raise BadInputError("read_frames got an empty list of paths")
    arrays = []
    for p in paths:
        arr = _imread_rgb(Path(p))
        if arrays and arr.shape != arrays[0].shape:
            raise BadInputError(f"size {arr.shape[1]}x{arr.shape[0]} differs from the first frame's "
                                f"{arrays[0].shape[1]}x{arrays[0].shape[0]}", p)
        arrays.append(arr)
    stack = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return stack / 127.5 - 1.0


def to_uint8_frames(frames: Tensor | np.ndarray | Sequence[np.ndarray] | Sequence[str | Path]) -> np.ndarray:
    """Normalise frames to uint8 RGB ``[T, H, W, 3]``.

    Accepts a float tensor ``[T, 3, H, W]`` in [-1, 1] (clamped, rounded), a uint8 array/tensor ``[T, H, W, 3]``, a
    list of uint8 ``[H, W, 3]`` arrays, or a list of image paths.
    """
    import torch

    if isinstance(frames, torch.Tensor):
        t = frames.detach().cpu()
        if t.ndim != 4:
            raise BadInputError(f"frames tensor must be 4-D, got shape {tuple(t.shape)}")
        if t.dtype == torch.uint8:
            arr = t.numpy()
        else:
            if t.shape[1] != 3:
                raise BadInputError(f"float frames must be [T, 3, H, W] in [-1, 1], got shape {tuple(t.shape)}")
            arr = ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    elif isinstance(frames, np.ndarray):
        arr = frames
    else:
        items = list(frames)
        if not items:
            raise BadInputError("no frames given")
        arrays = [_imread_rgb(Path(p)) if isinstance(p, (str, Path)) else np.asarray(p) for p in items]
        for i, a in enumerate(arrays):
            if a.shape != arrays[0].shape:
                where = items[i] if isinstance(items[i], (str, Path)) else None
                raise BadInputError(f"frame {i} has shape {a.shape}, frame 0 has {arrays[0].shape}", where)
        arr = np.stack(arrays)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise BadInputError(f"frames must be uint8 [T, H, W, 3], got {arr.dtype} {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise BadInputError("no frames given")
    return np.ascontiguousarray(arr)


def write_frames(
    frames: Tensor | np.ndarray | Sequence[np.ndarray],
    out_dir: str | Path,
    indices: Sequence[int] | None = None,
) -> list[Path]:
    """Write frames as ``frame_<index>.png`` (lossless, atomic per file); ``indices`` default to 0..T-1."""
    arr = to_uint8_frames(frames)
    idx = list(range(len(arr))) if indices is None else list(indices)
    if len(idx) != len(arr):
        raise BadInputError(f"{len(arr)} frames but {len(idx)} indices")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rgb in zip(idx, arr):
        p = out / frame_name(i)
        _atomic_imwrite(p, rgb)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------------------ encode


class EncodeConfig(BaseModel):
    """H.264 mp4 encoding settings for result and comparison videos."""

    model_config = ConfigDict(extra="forbid")

    crf: int = Field(18, ge=0, le=51, description="x264 constant rate factor (0 lossless luma, 18 visually lossless)")
    preset: str = Field("medium", description="x264 speed/size preset (ultrafast ... veryslow)")
    even: Literal["pad", "crop"] = Field(
        "pad", description="odd width/height: 'pad' replicates the last column/row, 'crop' drops it"
    )


def _make_even(arr: np.ndarray, mode: str) -> np.ndarray:
    _, h, w, _ = arr.shape
    if h % 2 == 0 and w % 2 == 0:
        return arr
    if mode == "crop":
        if h < 2 or w < 2:
            raise BadInputError(f"frames {w}x{h} are too small to crop to an even size")
        return np.ascontiguousarray(arr[:, : h - h % 2, : w - w % 2])
    return np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def encode_video(
    frames: Tensor | np.ndarray | Sequence[np.ndarray] | Sequence[str | Path],
    out_path: str | Path,
    fps: float | str | Fraction,
    config: EncodeConfig | None = None,
) -> Path:
    """Encode frames to an H.264 mp4 (yuv420p) at the source frame rate, atomically.

    Args:
        frames: float tensor ``[T, 3, H, W]`` in [-1, 1], uint8 ``[T, H, W, 3]``, list of uint8 arrays or of paths.
        out_path: destination ``.mp4``; only ever appears complete.
        fps: frame rate (float or an exact fraction such as ``"30000/1001"`` from :attr:`VideoInfo.fps_fraction`).
        config: crf, preset and the odd-size policy (default: pad right/bottom by one replicated pixel).

    Returns:
        ``out_path``. Raises :class:`StageError` naming the file when ffmpeg fails; no partial file is left.
    """
    cfg = config or EncodeConfig()
    arr = _make_even(to_uint8_frames(frames), cfg.even)
    t, h, w, _ = arr.shape
    rate = Fraction(str(fps)) if not isinstance(fps, Fraction) else fps
    if rate <= 0:
        raise BadInputError(f"fps must be positive, got {fps}", out_path)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        args = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=str(rate))
            .output(str(tmp), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=cfg.crf, preset=cfg.preset,
                    movflags="+faststart", r=str(rate), fps_mode="passthrough")
            .global_args("-nostdin", "-v", "error", "-y")
            .compile(cmd=ffmpeg_exe())
        )
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=err)
            assert proc.stdin is not None
            try:
                for frame in arr:
                    proc.stdin.write(frame.tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            rc = proc.wait()
            if rc != 0:
                err.seek(0)
                raise StageError(f"ffmpeg failed to encode {t} frames {w}x{h} ({_last_line(err.read())})", out)
    return out


def _label_strip(text: str, width: int, height: int) -> np.ndarray:
    import cv2

    strip = np.zeros((height, width, 3), np.uint8)
    scale = height / 40.0
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    while tw > width - 4 and scale > 0.2:
        scale *= 0.85
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    org = (max(2, (width - tw) // 2), (height + th) // 2)
    cv2.putText(strip, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return strip


def side_by_side(
    columns: Sequence[Tensor | np.ndarray | Sequence[np.ndarray] | Sequence[str | Path]],
    labels: Sequence[str] | None = None,
    label_height: int | None = None,
) -> np.ndarray:
    """Put equally long frame sequences next to each other (e.g. input | reconstruction | edit).

    Each column is resized (area/bilinear) to the first column's height keeping its aspect ratio. With ``labels``
    a black strip of ``label_height`` pixels (default: 1/8 of the height, at least 16) with centred white text is
    added on top of each column.

    Returns:
        uint8 ``[T, H (+ label_height), sum of widths, 3]``.
    """
    import cv2

    if not columns:
        raise BadInputError("side_by_side needs at least one column")
    cols = [to_uint8_frames(c) for c in columns]
    t, h = cols[0].shape[0], cols[0].shape[1]
    for i, c in enumerate(cols):
        if c.shape[0] != t:
            raise BadInputError(f"column {i} has {c.shape[0]} frames, column 0 has {t}")
    if labels is not None and len(labels) != len(cols):
        raise BadInputError(f"{len(labels)} labels for {len(cols)} columns")
    resized = []
    for c in cols:
        if c.shape[1] != h:
            w = max(1, int(round(c.shape[2] * h / c.shape[1])))
            interp = cv2.INTER_AREA if c.shape[1] > h else cv2.INTER_LINEAR
            c = np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in c])
        resized.append(c)
    if labels is not None:
        lh = label_height or max(16, h // 8)
        resized = [
            np.concatenate([np.broadcast_to(_label_strip(lab, c.shape[2], lh), (t, lh, c.shape[2], 3)), c], axis=1)
            for lab, c in zip(labels, resized)
        ]
    return np.ascontiguousarray(np.concatenate(resized, axis=2))


def encode_side_by_side(
    columns: Sequence[Tensor | np.ndarray | Sequence[np.ndarray] | Sequence[str | Path]],
    out_path: str | Path,
    fps: float | str | Fraction,
    labels: Sequence[str] | None = None,
    config: EncodeConfig | None = None,
) -> Path:
    """:func:`side_by_side` then :func:`encode_video` (atomic H.264 mp4 at ``fps``)."""
    return encode_video(side_by_side(columns, labels), out_path, fps, config)
