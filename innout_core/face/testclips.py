"""Face clips with known truth, made from a real photograph a package ships (scikit-image's astronaut): a known
smooth affine motion per frame (so the true landmarks are the photograph's landmarks mapped by it), sensor noise
(detector jitter), occluders that move over the face (dark shapes over the eyes, a skin-coloured hand over the
mouth, a bar across the face), a blanked stretch, a second person, and storage with a rotation display matrix.

Used by `bench/face_tracking.py` and the tracking tests; nothing here is read by the pipeline.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from .motion import interocular

__all__ = ["Clip", "Event", "FACE_CENTRE", "astronaut", "second_face_image", "motion", "make_clip", "nme",
           "write_rotated_mp4"]

OccluderKind = Literal["eyes", "hand", "bar", "blank", "second_face"]
FACE_CENTRE = np.array([223.0, 127.0])  # the astronaut's face in the 512² photograph (pixels)


def astronaut() -> np.ndarray:
    """[512, 512, 3] uint8 RGB photograph (scikit-image)."""
    import skimage.data

    return skimage.data.astronaut()


def second_face_image() -> np.ndarray:
    """[H, W, 3] uint8 RGB portrait of another person shipped with the insightface package."""
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"
    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(f"{path}: second-face portrait missing from the insightface package")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Event:
    """Something over the face for frames [start, start + length)."""

    kind: OccluderKind
    start: int
    length: int

    def covers(self, t: int) -> bool:
        return self.start <= t < self.start + self.length


@dataclass
class Clip:
    """A synthetic clip and its truth.

    Attributes:
        name: clip name.
        frames: T x [H, W, 3] uint8 RGB.
        truth: [T, 68, 2] float64 true landmarks (frame pixel-index coords).
        matrices: [T, 2, 3] photograph -> frame affine maps.
        events: the occluders / blanks / second person, by frame range.
        occluded: [T] bool, an occluder (eyes, hand, bar) over the face.
        blanked: [T] bool, the face region blanked (no face visible).
        second: [T] bool, a second person in the frame.
        second_box: [T, 4] (x0, y0, x1, y1) of the second person's face region (NaN where absent).
    """

    name: str
    frames: list[np.ndarray]
    truth: np.ndarray
    matrices: np.ndarray
    events: list[Event] = field(default_factory=list)
    occluded: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    blanked: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    second: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    second_box: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def motion(t: int, n: int, size: tuple[int, int] = (640, 480), amplitude: float = 1.0) -> np.ndarray:
    """[2, 3] affine photograph -> frame t, one loop every n frames: the face centre on a smooth Lissajous path
    around the frame centre (±70 x ±35 px), rotation ±8°, scale 1.15 ± 0.1 with a slight anisotropy (1.5 %)."""
    w, h = size
    u = 2 * math.pi * t / max(n, 1)
    ang = math.radians(8 * amplitude * math.sin(u))
    s = 1.15 + 0.1 * amplitude * math.sin(0.5 * u + 0.3)
    r = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]]) @ np.diag([1.015, 1.0])
    c = np.array([w / 2 + 70 * amplitude * math.sin(u + 0.4), h / 2 - 10 + 35 * amplitude * math.sin(2 * u)])
    return np.hstack([r, (c - r @ FACE_CENTRE)[:, None]])


def _ellipse(f: np.ndarray, centre: np.ndarray, axes: tuple[float, float], angle: float, colour) -> None:
    cv2.ellipse(f, (int(round(centre[0])), int(round(centre[1]))), (max(int(axes[0]), 1), max(int(axes[1]), 1)),
                angle, 0, 360, colour, -1, lineType=cv2.LINE_AA)


def _draw(f: np.ndarray, kind: OccluderKind, lm: np.ndarray, t: int, ang: float) -> None:
    """Draw one occluder over the face with landmarks lm [68, 2]; it drifts over the face (±0.12 inter-ocular
    distances, period 12 frames) so it does not move rigidly with the head."""
    iod = interocular(lm)
    drift = np.array([0.12 * iod * math.sin(2 * math.pi * t / 12), 0.06 * iod * math.cos(2 * math.pi * t / 12)])
    if kind == "eyes":  # sunglasses-like dark shapes over both eyes and brows
        for idx in (list(range(36, 42)) + [19], list(range(42, 48)) + [24]):
            _ellipse(f, lm[idx].mean(0) + drift, (0.42 * iod, 0.3 * iod), ang, (18, 18, 24))
    elif kind == "hand":  # a skin-coloured palm with fingers over the mouth and chin
        c = lm[48:68].mean(0) + drift + [0, 0.15 * iod]
        _ellipse(f, c, (0.8 * iod, 0.5 * iod), ang - 10, (206, 158, 132))
        for k in range(4):
            p = c + [(-0.55 + 0.37 * k) * iod, -0.45 * iod]
            _ellipse(f, p, (0.14 * iod, 0.32 * iod), ang, (196, 148, 124))
    elif kind == "bar":  # a dark bar across the nose (microphone, arm)
        c = lm[27:36].mean(0) + drift
        d = np.array([math.cos(math.radians(ang)), math.sin(math.radians(ang))])
        nrm = np.array([-d[1], d[0]])
        pts = np.array([c - 1.6 * iod * d - 0.25 * iod * nrm, c + 1.6 * iod * d - 0.25 * iod * nrm,
                        c + 1.6 * iod * d + 0.25 * iod * nrm, c - 1.6 * iod * d + 0.25 * iod * nrm])
        cv2.fillPoly(f, [np.round(pts).astype(np.int32)], (55, 60, 70), lineType=cv2.LINE_AA)
    elif kind == "blank":  # the whole face region flat grey
        lo, hi = lm.min(0) - 0.45 * iod, lm.max(0) + 0.45 * iod
        x0, y0 = np.maximum(np.floor(lo), 0).astype(int)
        x1, y1 = np.ceil(hi).astype(int)
        f[y0:y1, x0:x1] = 128


def make_clip(name: str, reference: np.ndarray, n: int = 60, events: list[Event] | None = None,
              size: tuple[int, int] = (640, 480), noise: float = 6.0, seed: int = 0,
              amplitude: float = 1.0, period: int = 60) -> Clip:
    """Build a clip of the astronaut moving by `motion`, with the given events.

    Args:
        reference: [68, 2] landmarks of the still photograph (e.g. dlib's predictor on the unoccluded photo): the
            truth of frame t is `reference` mapped by `motion(t)`.
        n: number of frames.
        events: occluders, blanks and a second person (`Event('second_face', ...)`: a larger portrait of another
            person on the opposite side of the frame).
        size: (W, H) in pixels.
        noise: per-pixel Gaussian noise (grey levels) drawn afresh every frame.
        amplitude: scales the motion's path, rotation and zoom.
        period: frames per loop of the motion path (60 = 2 s at 30 fps: an active head).
    """
    img = astronaut()
    events = list(events or [])
    rng = np.random.default_rng(seed)
    w, h = size
    other = None
    if any(e.kind == "second_face" for e in events):
        other = cv2.resize(second_face_image(), (150, 150), interpolation=cv2.INTER_AREA)
    frames, truth, mats = [], [], []
    occ, blank, sec = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    sbox = np.full((n, 4), np.nan)
    for t in range(n):
        m = motion(t, period, size, amplitude)
        f = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        lm = reference @ m[:, :2].T + m[:, 2]
        ang = math.degrees(math.atan2(m[1, 0], m[0, 0]))
        for e in events:
            if not e.covers(t):
                continue
            if e.kind == "second_face":
                assert other is not None
                fx = 10 if lm[:, 0].mean() > w / 2 else w - 160
                y0 = int(h / 2 - 75 + 20 * math.sin(2 * math.pi * t / n))
                f[y0:y0 + 150, fx:fx + 150] = other
                sbox[t] = [fx, y0, fx + 150, y0 + 150]
                sec[t] = True
            else:
                _draw(f, e.kind, lm, t, ang)
                (blank if e.kind == "blank" else occ)[t] = True
        f = np.clip(f + rng.normal(scale=noise, size=f.shape), 0, 255).astype(np.uint8)
        frames.append(f)
        truth.append(lm)
        mats.append(m)
    return Clip(name, frames, np.stack(truth), np.stack(mats), events, occ, blank, sec, sbox)


def nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Normalised mean error per frame: mean point distance / inter-ocular distance (outer eye corners) of the
    truth. pred, truth: [T, 68, 2]; returns [T] (NaN where pred is NaN)."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    iod = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)
    return np.linalg.norm(pred - truth, axis=-1).mean(-1) / iod


def write_rotated_mp4(frames: list[np.ndarray], path: Path, fps: int = 25, rotate: int = 90) -> Path:
    """Store upright frames as an H.264 mp4 whose pixels are turned by a quarter turn and whose display matrix
    (ffmpeg's `rotate` tag, written as a display matrix) turns them back, as phones do. The turn of the stored
    pixels is the one for which ffmpeg's own decoding shows frame 0 upright (ffmpeg versions differ on the tag's
    direction).

    Raises:
        RuntimeError: neither turn decodes upright.
    """
    from innout_core.video import EncodeConfig, encode_video, ffmpeg_exe, iter_frames

    tmp = path.with_name(f".{path.stem}.plain.mp4")
    try:
        for k in (rotate // 90, -(rotate // 90)):
            stored = [np.ascontiguousarray(np.rot90(f, k=k)) for f in frames]
            encode_video(stored, tmp, fps, EncodeConfig(crf=12, preset="veryfast"))
            subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(tmp), "-c", "copy", "-metadata:s:v:0",
                            f"rotate={rotate}", str(path)], check=True)
            shown = next(iter_frames(path))[1]
            if shown.shape == frames[0].shape and np.abs(shown.astype(float) - frames[0]).mean() < 10:
                return path
    finally:
        tmp.unlink(missing_ok=True)
    raise RuntimeError(f"{path}: no quarter turn of the pixels decodes upright with rotate={rotate}")
