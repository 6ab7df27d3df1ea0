"""What a video input is, through ``ffprobe``: the ffmpeg tools, :class:`VideoInfo` and :func:`probe`.

:func:`probe` reads a file's (or a folder of frame images') frame count, frame rate, display size, rotation and
whether its frame rate varies, and turns every kind of unusable input (missing, empty, corrupt, not a media file,
audio only, undecodable) into a one-line :class:`~innout_core.errors.BadInputError` naming the file. No torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg
import numpy as np

from innout_core.errors import BadInputError, InnoutError

__all__ = ["FRAMES_DIR_FPS", "IMAGE_SUFFIXES", "VideoInfo", "ffmpeg_exe", "ffprobe_exe", "frame_images", "probe"]


# ------------------------------------------------------------------------------------------------ tools


def ffmpeg_exe() -> str:
    """Path of the ``ffmpeg`` binary: ``$INNOUT_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled one."""
    env = os.environ.get("INNOUT_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # imageio-ffmpeg raises RuntimeError when it has no binary for this platform
        raise InnoutError(
            f"ffmpeg not found on PATH and imageio-ffmpeg has none ({exc}): install ffmpeg (e.g. apt install ffmpeg)"
        ) from exc


def ffprobe_exe() -> str:
    """Path of the ``ffprobe`` binary: ``$INNOUT_FFPROBE``, else ``ffprobe`` on PATH (imageio-ffmpeg ships none)."""
    env = os.environ.get("INNOUT_FFPROBE")
    if env:
        return env
    found = shutil.which("ffprobe")
    if not found:
        raise InnoutError("ffprobe not found on PATH: install ffmpeg (e.g. apt install ffmpeg), which provides it")
    return found


def _last_line(stderr: bytes | str | None) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


# ------------------------------------------------------------------------------------------------ probe


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found. Sizes are the *display* size (rotation applied), which is what frames decode to."""

    path: Path
    width: int
    height: int
    frame_count: int
    fps: float
    fps_fraction: str
    duration: float | None
    rotation: int
    variable_frame_rate: bool
    codec: str
    pix_fmt: str
    has_audio: bool
    frame_times: tuple[float, ...]

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of decoded frames."""
        return self.height, self.width


#: Image files a frames directory may hold, and the frame rate given to such a directory (images carry no time).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FRAMES_DIR_FPS = Fraction(25)


def frame_images(folder: str | Path) -> list[Path]:
    """The images of a frames directory in frame order: file names sorted by their numbers (``2.png`` before
    ``10.png``); frame ``i`` of the directory is the ``i``-th image (hidden files and other suffixes ignored)."""
    def key(p: Path) -> list[int | str]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    return sorted((p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES), key=key)


def _imread_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB ``[H, W, 3]`` (OpenCV, imported on use); BadInputError naming the file otherwise."""
    import cv2

    if not path.is_file():
        raise BadInputError("image not found", path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise BadInputError("cannot be decoded as an image (corrupt or unsupported format)", path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _probe_frames_dir(path: Path) -> VideoInfo:
    """A frames directory as a video: frame count, size of its first image (decoded), 25 frames/s."""
    if not os.access(path, os.R_OK | os.X_OK):
        raise BadInputError("frames directory cannot be read (permission denied): check its permissions", path)
    images = frame_images(path)
    if not images:
        raise BadInputError(f"is a directory with no frame images ({', '.join(IMAGE_SUFFIXES)}): give a video file "
                            "or a folder of frames", path)
    h, w = _imread_rgb(images[0]).shape[:2]
    n, rate = len(images), FRAMES_DIR_FPS
    return VideoInfo(path=path, width=w, height=h, frame_count=n, fps=float(rate),
                     fps_fraction=f"{rate.numerator}/{rate.denominator}", duration=n / float(rate), rotation=0,
                     variable_frame_rate=False, codec="images", pix_fmt="rgb24", has_audio=False,
                     frame_times=tuple(i / float(rate) for i in range(n)))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadInputError("file not found", path)
    if not os.access(path, os.R_OK):
        raise BadInputError("cannot be read (permission denied): check the file's permissions", path)
    if path.stat().st_size == 0:
        raise BadInputError("file is empty (0 bytes): re-copy or re-download the video", path)


def _rotation(stream: dict) -> int:
    rot = 0.0
    tags = stream.get("tags") or {}
    if "rotate" in tags:
        try:
            rot = float(tags["rotate"])
        except ValueError:
            rot = 0.0
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            # The display matrix rotation is counter-clockwise; the legacy tag is clockwise.
            rot = -float(side["rotation"])
    return int(round(rot)) % 360


def _fraction(text: str | None) -> Fraction | None:
    if not text or text in ("0/0", "N/A"):
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def probe(path: str | Path, vfr_tolerance: float = 0.02) -> VideoInfo:
    """Probe a video file with ffprobe (demux only, no decoding).

    The frame count and per-frame presentation times come from the video stream's packets (sorted by pts), so they
    are exact for files whose header lacks ``nb_frames``. ``variable_frame_rate`` is True when the frame intervals
    differ from their median by more than ``vfr_tolerance`` (relative) or ffprobe's real and average rates disagree.

    A directory is a frames directory (:func:`frame_images`): its images are the frames, at 25 frames/s.

    Raises:
        BadInputError: missing, empty, unreadable, corrupt or non-media file, or a file with no video stream; a
            directory without images or whose first image does not decode.
    """
    path = Path(path)
    if path.is_dir():
        return _probe_frames_dir(path)
    _check_file(path)
    try:
        meta = ffmpeg.probe(str(path), cmd=ffprobe_exe())
    except ffmpeg.Error as exc:
        raise BadInputError(
            f"ffprobe cannot read it as a video ({_last_line(exc.stderr)}): the file is corrupt or not a media file",
            path,
        ) from None
    streams = meta.get("streams") or []
    video = [s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get(
        "attached_pic")]
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    if not video:
        kinds = sorted({f"{s.get('codec_type')} ({s.get('codec_name')})" for s in streams}) or ["no streams"]
        what = "audio only" if has_audio else "no video stream"
        raise BadInputError(f"has no video stream ({what}: {', '.join(kinds)}); give a video file", path)
    stream = video[0]
    codec = stream.get("codec_name") or "unknown"
    if codec in ("unknown", "none") or not stream.get("width"):
        raise BadInputError(f"video stream codec '{codec}' is not supported by this ffmpeg build", path)

    # Packet timestamps: exact frame count and the frame-time grid (for fps selection and VFR detection).
    try:
        out = subprocess.run(
            [ffprobe_exe(), "-v", "error", "-select_streams", f"{stream['index']}",
             "-show_entries", "packet=pts_time,flags",
               "-of", "json", str(path)],
            capture_output=True,
            check=True,
        ).stdout
        packets = json.loads(out or b"{}").get("packets") or []
    except (subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        raise BadInputError(f"ffprobe cannot list its video packets ({exc}): the file is corrupt", path) from None
    times = sorted(float(p["pts_time"]) for p in packets if p.get("pts_time") not in (None, "N/A"))
    count = len(packets)
    if count == 0:
        nb = stream.get("nb_frames")
        count = int(nb) if nb and str(nb).isdigit() else 0
    if count == 0:
        raise BadInputError("video stream has no frames: the file is truncated or corrupt", path)

    avg = _fraction(stream.get("avg_frame_rate"))
    real = _fraction(stream.get("r_frame_rate"))
    rate = avg or real
    if rate is None and len(times) > 1 and times[-1] > times[0]:
        rate = Fraction((len(times) - 1) / (times[-1] - times[0])).limit_denominator(1001)
    rate = rate or Fraction(25)
    vfr = False
    if len(times) > 2:
        deltas = np.diff(np.asarray(times))
        med = float(np.median(deltas))
        if med > 0:
            vfr = bool(np.max(np.abs(deltas - med)) > vfr_tolerance * med + 1e-6)
    if avg is not None and real is not None and abs(float(avg) - float(real)) > vfr_tolerance * float(real):
        vfr = True
    rotation = _rotation(stream)
    w, h = int(stream["width"]), int(stream["height"])
    if rotation in (90, 270):
        w, h = h, w
    duration = stream.get("duration") or (meta.get("format") or {}).get("duration")
    if len(times) != count:
        times = [i / float(rate) for i in range(count)]
    return VideoInfo(
        path=path,
        width=w,
        height=h,
        frame_count=count,
        fps=float(rate),
        fps_fraction=f"{rate.numerator}/{rate.denominator}",
        duration=float(duration) if duration not in (None, "N/A") else None,
        rotation=rotation,
        variable_frame_rate=vfr,
        codec=codec,
        pix_fmt=stream.get("pix_fmt") or "unknown",
        has_audio=has_audio,
        frame_times=tuple(times),
    )
