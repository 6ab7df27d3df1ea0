"""One video through face preprocessing: detect → track (through detector misses) → fill gaps → smooth → 68→5 →
official crop → camera label. Every input frame gets a crop, a camera and a status (`ok`, `predicted`, `filled`,
`no_face`), unless `ends='trim'` drops the faceless frames at the ends; a video fails only when no frame has a
face."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from innout_core.errors import BadInputError
from innout_core.settings.face import FaceConfig

from .align import OUTPUT_SIZE, CropParams, align_crop, official_crop_params
from .backends import Detection, FaceBackend
from .given import GivenBackend
from .landmarks import landmarks68_to_5
from .pose import estimate_labels
from .smoothing import smooth_landmarks
from .track import Switch, Tracker

__all__ = ["FaceConfig", "TrackResult", "PreprocessResult", "Status", "make_backend", "track_video", "fill_gaps",
           "gap_runs", "output_landmarks", "preprocess_video"]

Status = Literal["ok", "predicted", "filled", "no_face"]
log = logging.getLogger("innout.face")


def make_backend(cfg: FaceConfig, given: GivenBackend | None = None) -> FaceBackend:
    """Build the configured backend; `given` must be supplied for `backend='given'`."""
    if cfg.backend == "given":
        if given is None:
            raise BadInputError("face.backend=given needs landmarks from the manifest, and none were given")
        return given
    if cfg.backend == "dlib":
        from .dlib_backend import DlibBackend

        thr = 0.0 if cfg.det_threshold is None else cfg.det_threshold
        return DlibBackend(upsample=cfg.dlib_upsample, score_threshold=thr, descriptors=cfg.descriptors)
    from .insightface_backend import InsightfaceBackend

    thr = 0.5 if cfg.det_threshold is None else cfg.det_threshold
    return InsightfaceBackend(cfg.insightface_root, cfg.insightface_pack, det_threshold=thr, det_size=cfg.det_size,
                              descriptors=cfg.descriptors)


@dataclass
class TrackResult:
    """The target per frame before gap filling: `detections[t]` is None exactly where `status[t] == 'no_face'`;
    `status[t]` is 'ok' (detected) or 'predicted' (landmark model on the track's predicted box) elsewhere."""

    detections: list[Detection | None]
    status: list[Status]
    n_faces: list[int]  # faces found per frame (all people)
    n_descriptors: int = 0  # identity descriptors computed while tracking
    switches: list[Switch] = field(default_factory=list)  # the track moved to another face (see Tracker)


@dataclass
class PreprocessResult:
    """Per-frame outputs, T = number of input frames (none dropped).

    Attributes:
        kept: positions of the input frames in the outputs (all of them unless `ends='trim'` dropped leading /
            trailing frames without a face); every other field has T = len(kept) rows, except `raw_landmarks`.
        crops: [T, 3, 512, 512] uint8 RGB official crops (to [-1, 1] with x / 127.5 - 1).
        cameras: [T, 25] float32 EG3D labels (cam2world row-major + normalised K).
        landmarks: [T, K, 2] float32 smoothed (and filled) landmarks, frame pixel-index coords, K = 68 or 5.
        raw_landmarks: [N, K, 2] float32 tracked landmarks of every input frame (N >= T), NaN where no face was
            found.
        crop_landmarks: [T, K, 2] float32 smoothed landmarks in crop pixel-index coords.
        quads: [T, 4, 2] float32 crop corners (TL, TR, BR, BL) in frame pixel coords, for pasting back.
        params: per frame the crop transform (frame -> crop; `CropParams.to_crop`).
        status: per frame 'ok' (detected), 'predicted' (tracked through a detector miss), 'filled' (no face found
            inside the video, landmarks interpolated from neighbours) or 'no_face' (before the first / after the last
            face, held at the nearest face).
        pose_rms_px: [T] float32 reprojection RMS of the camera fit, crop pixels (NaN for given cameras).
        warnings: one line per change of the tracked face, long gap or held / trimmed end.
    """

    kept: list[int]
    crops: torch.Tensor
    cameras: torch.Tensor
    landmarks: torch.Tensor
    raw_landmarks: torch.Tensor
    crop_landmarks: torch.Tensor
    quads: torch.Tensor
    params: list[CropParams]
    status: list[Status]
    pose_rms_px: torch.Tensor
    warnings: list[str]


def _frame(frames, t: int) -> np.ndarray:
    f = frames[t]
    if isinstance(f, torch.Tensor):
        f = f.detach().cpu()
        f = f.permute(1, 2, 0) if f.dim() == 3 and f.shape[0] == 3 and f.shape[-1] != 3 else f
        f = f.numpy()
    return np.ascontiguousarray(f)


def track_video(frames: Sequence[np.ndarray] | np.ndarray | torch.Tensor, backend: FaceBackend,
                cfg: FaceConfig) -> TrackResult:
    """Detect every frame and follow the target through misses (frames: T x [H, W, 3] uint8 RGB, or a
    [T, 3, H, W] uint8 tensor)."""
    shape = _frame(frames, 0).shape[:2] if len(frames) else (0, 0)
    tracker = Tracker(backend, cfg.tracking, shape)
    steps, dets = [], []
    for t in range(len(frames)):
        f = _frame(frames, t)
        dets.append(backend.detect(f, t))
        steps.append(tracker.step(t, dets[-1], f))
    out = TrackResult([s.detection for s in steps], [s.status for s in steps], [s.n_faces for s in steps],
                      tracker.n_descriptors, list(tracker.switches))
    if tracker.switches:
        _redo_before(out, tracker.switches[-1], frames, dets, backend, cfg)
    return out


def _redo_before(tr: TrackResult, sw: Switch, frames, dets: list[list[Detection]], backend: FaceBackend,
                 cfg: FaceConfig) -> None:
    """After the track moved to another face: its detections from `sw.since` on, and the frames before re-tracked
    backwards from its first detection (same tracker, frames in reverse order, no further switching)."""
    for t, det in sw.detections:
        tr.detections[t], tr.status[t] = det, "ok"
    back = Tracker(backend, cfg.tracking, _frame(frames, 0).shape[:2])
    back.allow_switch = False
    first = sw.detections[0][1]
    back.step(0, [first], _frame(frames, sw.since))
    for k, t in enumerate(range(sw.since - 1, -1, -1), start=1):
        f = _frame(frames, t)
        s = back.step(k, dets[t], f)
        tr.detections[t], tr.status[t] = s.detection, s.status
    tr.n_descriptors += back.n_descriptors


def gap_runs(found: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of frames where `found` [T] bool is False."""
    runs, t, n = [], 0, len(found)
    while t < n:
        if found[t]:
            t += 1
            continue
        end = t
        while end < n and not found[end]:
            end += 1
        runs.append((t, end))
        t = end
    return runs


def _end_velocity(lm: np.ndarray, found: np.ndarray, t: int, step: int, n: int = 2) -> np.ndarray | None:
    """Least-squares velocity [K, 2] (per frame) over up to `n` consecutive found frames from t going by `step`;
    None when t is the only one."""
    ts = [t]
    while len(ts) < n and 0 <= ts[-1] + step < len(found) and found[ts[-1] + step]:
        ts.append(ts[-1] + step)
    if len(ts) < 2:
        return None
    tt = np.asarray(ts, np.float64)
    tc = tt - tt.mean()
    return np.tensordot(tc, lm[ts] - lm[ts].mean(0), axes=(0, 0)) / (tc ** 2).sum()


def fill_gaps(landmarks: np.ndarray, found: np.ndarray, max_gap: int, name: str | Path,
              method: Literal["motion", "linear"] = "motion") -> np.ndarray:
    """Fill runs of frames without a face: inside the video, along the motion (`'motion'`: a cubic Hermite curve
    per coordinate through the neighbours' positions and velocities, each velocity a least-squares slope over up
    to 2 found frames, the chord's slope where a side has only one, so the fill follows a curved path) or a straight line between the neighbours
    (`'linear'`); the nearest face at the ends. Runs of any length are filled (runs longer than `max_gap` are only
    warned about by `preprocess_video`); a video fails only when no frame has a face.

    Args:
        landmarks: [T, K, 2] (rows where `found` is False are ignored).
        found: [T] bool.
        max_gap: kept for the warning threshold (see `FaceConfig.max_gap`).
        name: the video, named in errors.
        method: 'motion' or 'linear' (see above).
    Raises:
        BadInputError: no face in any frame.
    """
    lm = np.asarray(landmarks, dtype=np.float64).copy()
    found = np.asarray(found, dtype=bool)
    t_all = len(found)
    if not found.any():
        raise BadInputError(f"no face found in any of its {t_all} frames; check the video or lower "
                            f"face.det_threshold", name)
    for t, end in gap_runs(found):
        if t == 0:
            lm[t:end] = lm[end]
        elif end == t_all:
            lm[t:end] = lm[t - 1]
        else:
            w = ((np.arange(t, end) - (t - 1)) / (end - (t - 1)))[:, None, None]
            if method == "linear":
                lm[t:end] = (1 - w) * lm[t - 1] + w * lm[end]
                continue
            span = end - (t - 1)  # Hermite on [t-1, end], tangents scaled to the span; a side with one found
            chord = (lm[end] - lm[t - 1]) / span  # frame takes the chord's slope
            v0, v1 = (_end_velocity(lm, found, t - 1, -1), _end_velocity(lm, found, end, 1))
            v0, v1 = (chord if v is None else v for v in (v0, v1))
            v0, v1 = v0 * span, v1 * span
            h00, h10, h01, h11 = 2 * w**3 - 3 * w**2 + 1, w**3 - 2 * w**2 + w, -2 * w**3 + 3 * w**2, w**3 - w**2
            lm[t:end] = h00 * lm[t - 1] + h10 * v0 + h01 * lm[end] + h11 * v1
    return lm


def _switch_warnings(switches: Sequence[Switch], ids: Sequence[int]) -> list[str]:
    return [f"target face changed at frame {ids[sw.frame]}: the track had started on a detection whose landmarks "
            f"did not fit a face and moved to the face detected since frame {ids[sw.since]}; frames "
            f"{ids[0]}-{ids[sw.frame]} re-tracked on it" for sw in switches]


def _gap_warnings(found: np.ndarray, cfg: FaceConfig, ids: Sequence[int]) -> list[str]:
    out, n = [], len(found)

    def span(a: int, b: int) -> str:
        return f"{ids[a]}-{ids[b]}" if ids[b] - ids[a] == b - a else ", ".join(str(ids[i]) for i in range(a, b + 1))

    for t, end in gap_runs(found):
        if t == 0 or end == n:
            what = "held at the nearest face (status no_face)" if cfg.ends == "hold" else "trimmed"
            out.append(f"no face in frames {span(t, end - 1)} at the {'start' if t == 0 else 'end'} of the video: "
                       f"{what}")
        elif end - t > cfg.max_gap:
            out.append(f"no face in frames {span(t, end - 1)} ({end - t} consecutive frames, more than "
                       f"face.max_gap={cfg.max_gap}): landmarks interpolated (status filled)")
    return out


def output_landmarks(tr: TrackResult, cfg: FaceConfig, name: str | Path = "video") -> tuple[list[int], np.ndarray]:
    """The landmarks the face stage outputs for a tracking result: gaps filled, ends held or trimmed, smoothed.

    Returns:
        (kept frame positions, [len(kept), K, 2] float64 landmarks).
    Raises:
        BadInputError: no face in any frame, or mixed landmark layouts.
    """
    n = len(tr.detections)
    raw, found = _raw_landmarks(tr, name)
    filled = fill_gaps(raw, found, cfg.max_gap, name, cfg.fill)
    first, last = int(np.argmax(found)), n - 1 - int(np.argmax(found[::-1]))
    kept = list(range(first, last + 1)) if cfg.ends == "trim" else list(range(n))
    return kept, smooth_landmarks(filled[kept], cfg.smoothing)


def _raw_landmarks(tr: TrackResult, name: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The tracked landmarks as ``[T, K, 2]`` (NaN where no face) and ``[T]`` bool found; one layout K per video."""
    ks = {d.landmarks.shape for d in tr.detections if d is not None}
    if len(ks) > 1:
        raise BadInputError(f"backend returned mixed landmark layouts {sorted(ks)}", name)
    k = ks.pop()[0] if ks else 68
    raw = np.full((len(tr.detections), k, 2), np.nan)
    for t, d in enumerate(tr.detections):
        if d is not None:
            raw[t] = d.landmarks
    return raw, np.array([d is not None for d in tr.detections], dtype=bool)


def preprocess_video(frames: Sequence[np.ndarray] | np.ndarray | torch.Tensor, backend: FaceBackend,
                     cfg: FaceConfig, name: str | Path = "video", tracked: TrackResult | None = None,
                     frame_ids: Sequence[int] | None = None) -> PreprocessResult:
    """Detect, track, fill, smooth, crop (official geometry) and estimate cameras for one video.

    Args:
        frames: T frames, each [H, W, 3] uint8 RGB (a list, a [T, H, W, 3] array, or a [T, 3, H, W] uint8 tensor).
        backend: a `FaceBackend` (see `make_backend`).
        cfg: `FaceConfig`.
        name: the video (named in errors).
        tracked: the result of `track_video` on these frames, to reuse detections (e.g. when trying several
            smoothing settings); detected again when None.
        frame_ids: the frames' source indices, named in warnings (default 0..T-1).
    Raises:
        BadInputError: empty video, frames of different sizes, or no face in any frame.
    """
    n = len(frames)
    if n == 0:
        raise BadInputError("video has no frames", name)
    tr = track_video(frames, backend, cfg) if tracked is None else tracked
    if len(tr.detections) != n:
        raise BadInputError(f"tracking result has {len(tr.detections)} frames, the video {n}", name)
    raw, found = _raw_landmarks(tr, name)
    k = raw.shape[1]
    ids = list(range(n)) if frame_ids is None else list(frame_ids)
    warnings = _switch_warnings(tr.switches, ids) + _gap_warnings(found, cfg, ids)
    for w in warnings:
        log.warning("%s: %s", name, w)
    kept, smooth = output_landmarks(tr, cfg, name)
    first, last = int(np.argmax(found)), n - 1 - int(np.argmax(found[::-1]))
    status: list[Status] = []
    for t in kept:
        s = tr.status[t]
        status.append(s if s != "no_face" else "filled" if first < t < last else "no_face")
    lm5 = landmarks68_to_5(smooth) if k == 68 else smooth

    m = len(kept)
    crops = np.empty((m, OUTPUT_SIZE, OUTPUT_SIZE, 3), np.uint8)
    crop_lm = np.empty_like(smooth)
    quads = np.empty((m, 4, 2))
    params_all: list[CropParams] = []
    size = None
    for i, t in enumerate(kept):
        frame = _frame(frames, t)
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            raise BadInputError(f"frame {t} is {frame.shape}, frame 0 is {size}; frames must share one size", name)
        params = official_crop_params(lm5[i], frame.shape[1], frame.shape[0])
        crops[i] = align_crop(frame, params)
        crop_lm[i] = params.to_crop(smooth[i])
        quads[i] = params.quad()
        params_all.append(params)

    if cfg.camera == "given":
        cams = getattr(backend, "cameras", None)
        if cams is None:
            raise BadInputError("face.camera=given but the backend has no cameras (use the given backend with "
                                "cameras in the manifest)", name)
        cams = np.asarray(cams, np.float32)
        if len(cams) < n:
            raise BadInputError(f"{len(cams)} given cameras for {n} frames", name)
        cameras = torch.from_numpy(cams[kept].copy())
        rms = torch.full((m,), float("nan"))
    else:
        cameras, poses = estimate_labels(crop_lm)
        rms = torch.tensor([p.rms_px for p in poses], dtype=torch.float32)
    return PreprocessResult(
        kept=kept,
        crops=torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(),
        cameras=cameras.float(),
        landmarks=torch.from_numpy(smooth).float(),
        raw_landmarks=torch.from_numpy(raw).float(),
        crop_landmarks=torch.from_numpy(crop_lm).float(),
        quads=torch.from_numpy(quads).float(),
        params=params_all,
        status=status,
        pose_rms_px=rms,
        warnings=warnings,
    )
