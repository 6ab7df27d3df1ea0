"""Face clips with known truth, made from a real photograph a package ships (scikit-image's astronaut): a known
smooth affine motion per frame (so the true landmarks are the photograph's landmarks mapped by it), sensor noise
(detector jitter), occluders that move over the face (dark shapes over the eyes, a skin-coloured hand over the
mouth, a skin-coloured ellipse over nose, mouth and chin, a bar across the face, a palm that moves rigidly with the
head), a blanked stretch, a head turn away from the camera (yaw, a perspective warp of the face), a second person,
a false face-sized detection on the clothing (`FalseDetections`), and storage with a rotation display matrix.

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

from innout_core.face.backends import Detection, FaceBackend
from innout_core.face.motion import interocular

__all__ = ["Clip", "Event", "FACE_CENTRE", "FalseDetections", "Motion", "astronaut", "second_face_image", "motion",
           "make_clip", "nme", "write_rotated_mp4"]

OccluderKind = Literal["eyes", "hand", "lower", "palm", "bar", "blank", "yaw", "second_face", "false_face"]
OCCLUDERS = ("eyes", "hand", "lower", "palm", "bar")
FACE_CENTRE = np.array([223.0, 127.0])  # the astronaut's face in the 512² photograph (pixels)
CLOTHING_CENTRE = np.array([85.0, 255.0])  # the space suit's shoulder, photograph pixels


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
        turned: [T] bool, the head turned away (yaw event).
        false_box: [T, 4] (x0, y0, x1, y1) of a face-sized region of the clothing where `FalseDetections` reports a
            face (NaN where absent).
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
    turned: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    false_box: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


@dataclass(frozen=True)
class Motion:
    """The head's path (photograph -> frame): translation amplitudes (pixels), roll amplitude (degrees), zoom
    amplitude (fraction of the mean scale 1.15) and the phase offsets of each component (radians)."""

    shift: tuple[float, float] = (70.0, 35.0)
    roll: float = 8.0
    zoom: float = 0.1 / 1.15
    phase: tuple[float, float, float, float] = (0.4, 0.0, 0.0, 0.3)


def motion(t: int, n: int, size: tuple[int, int] = (640, 480), amplitude: float = 1.0,
           path: Motion = Motion()) -> np.ndarray:
    """[2, 3] affine photograph -> frame t, one loop every n frames: the face centre on a smooth Lissajous path
    around the frame centre (default ±70 x ±35 px), rotation (default ±8°), scale 1.15 x (1 ± `zoom`, zoom at half
    the loop's frequency) with a slight anisotropy (1.5 %); `amplitude` scales all three."""
    w, h = size
    u = 2 * math.pi * t / max(n, 1)
    px, py, pr, ps = path.phase
    ang = math.radians(path.roll * amplitude * math.sin(u + pr))
    s = 1.15 * (1 + path.zoom * amplitude * math.sin(0.5 * u + ps))
    r = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]]) @ np.diag([1.015, 1.0])
    c = np.array([w / 2 + path.shift[0] * amplitude * math.sin(u + px),
                  h / 2 - 10 + path.shift[1] * amplitude * math.sin(2 * u + py)])
    return np.hstack([r, (c - r @ FACE_CENTRE)[:, None]])


def _yaw_homography(centre: np.ndarray, iod: float, yaw_deg: float) -> np.ndarray:
    """[3, 3] homography of a head turned by `yaw_deg` about a vertical axis through `centre`, seen from a camera
    12 inter-ocular distances away: x shrinks by cos(yaw), the far side more (perspective)."""
    a = math.radians(yaw_deg)
    d = 12.0 * iod
    k = np.array([[math.cos(a), 0, 0], [0, 1, 0], [math.sin(a) / d, 0, 1]])
    tr = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1]])
    return tr @ k @ np.linalg.inv(tr)


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:]


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
    elif kind == "lower":  # a skin-coloured ellipse over nose, mouth and chin (a hand held in front of the face)
        c = np.r_[lm[30:36], lm[48:68], lm[6:11]].mean(0) + drift
        _ellipse(f, c, (0.8 * iod, 0.72 * iod), ang, (214, 170, 140))
    elif kind == "palm":  # a palm over one cheek, mouth and chin that moves rigidly with the head (no drift)
        c = lm[[3, 4, 5, 48, 57, 31]].mean(0)
        _ellipse(f, c, (0.7 * iod, 0.6 * iod), ang + 20, (200, 152, 128))
        for k in range(4):
            p = c + (np.array([[math.cos(math.radians(ang)), -math.sin(math.radians(ang))],
                               [math.sin(math.radians(ang)), math.cos(math.radians(ang))]])
                     @ [(-0.45 + 0.3 * k) * iod, -0.75 * iod])
            _ellipse(f, p, (0.12 * iod, 0.35 * iod), ang, (192, 145, 122))
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
              amplitude: float = 1.0, period: int = 60, path: Motion = Motion(), yaw: float = 50.0) -> Clip:
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
        period: frames per loop of the motion path (60 = 2 s at 30 fps: an active head; 30 = 1.2 s at 25 fps).
        path: the motion's amplitudes and phases (`Motion`).
        yaw: largest head turn of a `yaw` event (degrees), reached mid-event (the turn rises and falls as a
            half sine over the event).
    """
    img = astronaut()
    events = list(events or [])
    rng = np.random.default_rng(seed)
    w, h = size
    other = None
    if any(e.kind == "second_face" for e in events):
        other = cv2.resize(second_face_image(), (150, 150), interpolation=cv2.INTER_AREA)
    frames, truth, mats = [], [], []
    occ, blank, sec, turned = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    sbox, fbox = np.full((n, 4), np.nan), np.full((n, 4), np.nan)
    ref_box = np.r_[reference.min(0), reference.max(0)]
    for t in range(n):
        m = motion(t, period, size, amplitude, path)
        hom = np.vstack([m, [0, 0, 1]])
        lm = reference @ m[:, :2].T + m[:, 2]
        for e in events:
            if e.kind == "yaw" and e.covers(t):
                a = yaw * math.sin(math.pi * (t - e.start + 1) / (e.length + 1))
                hom = _yaw_homography(lm[27:36].mean(0), interocular(lm), a) @ hom
                lm = _apply_h(hom, reference)
                turned[t] = True
        f = cv2.warpPerspective(img, hom, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ang = math.degrees(math.atan2(m[1, 0], m[0, 0]))
        for e in events:
            if not e.covers(t) or e.kind == "yaw":
                continue
            if e.kind == "false_face":  # the clothing region a face-sized box: where FalseDetections reports one
                half = (ref_box[2:] - ref_box[:2]) * 1.15 * math.sqrt(abs(np.linalg.det(m[:, :2]))) / 2
                c = m[:, :2] @ CLOTHING_CENTRE + m[:, 2]
                fbox[t] = np.r_[c - half, c + half]
            elif e.kind == "second_face":
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
    return Clip(name, frames, np.stack(truth), np.stack(mats), events, occ, blank, sec, sbox, turned, fbox)


class FalseDetections(FaceBackend):
    """A backend that also reports a face where there is none: in the frames where `boxes[t]` is finite it adds a
    detection of that box with the given score and the wrapped backend's landmark model run on it (what a detector's
    false positive on clothing gives the pipeline). Everything else is the wrapped backend's.

    Args:
        inner: the real backend.
        boxes: [T, 4] (x0, y0, x1, y1) per frame, NaN where no false face is reported (`Clip.false_box`).
        score: the false detection's score (relative to the detector's scale: above the real face's to test that
            selection does not trust the score alone).
    """

    def __init__(self, inner: FaceBackend, boxes: np.ndarray, score: float) -> None:
        self.inner, self.boxes, self.score = inner, np.asarray(boxes, np.float64), float(score)
        self.name, self.identity_threshold = inner.name, inner.identity_threshold

    def detect(self, frame: np.ndarray, index: int) -> list[Detection]:
        out = list(self.inner.detect(frame, index))
        if index < len(self.boxes) and np.isfinite(self.boxes[index]).all():
            fake = self.inner.landmarks_in_box(frame, self.boxes[index])
            if fake is not None:
                out.append(Detection(self.boxes[index].copy(), self.score, fake.landmarks, fake.descriptor,
                                     fake.describe))
        return sorted(out, key=lambda d: -d.score)

    def landmarks_in_box(self, frame: np.ndarray, box: np.ndarray) -> Detection | None:
        return self.inner.landmarks_in_box(frame, box)

    def identity_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.inner.identity_distance(a, b)


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
