"""One video through face preprocessing: detect → track (through detector misses) → fill gaps → smooth → 68→5 →
official crop → camera label. Every input frame gets a crop, a camera and a status (`ok`, `predicted`, `filled`,
`no_face`), unless `ends='trim'` drops the faceless frames at the ends; a video fails only when no frame has a
face."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from innout_core.errors import BadInputError

from .align import OUTPUT_SIZE, CropParams, align_crop, official_crop_params
from .backends import Detection, FaceBackend
from .given import GivenBackend
from .landmarks import landmarks68_to_5
from .pose import estimate_labels
from .smoothing import SmoothingConfig, smooth_landmarks
from .track import Tracker, TrackingConfig

__all__ = ["FaceConfig", "TrackResult", "PreprocessResult", "Status", "make_backend", "track_video", "fill_gaps",
           "gap_runs", "output_landmarks", "preprocess_video"]

Status = Literal["ok", "predicted", "filled", "no_face"]
log = logging.getLogger("innout.face")


class FaceConfig(BaseModel):
    """Face preprocessing stage: backend, tracking, gap filling, smoothing, camera source."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["insightface", "dlib", "given"] = Field(
        "insightface", description="landmark source: insightface pack (real use), dlib (offline), given (manifest)")
    insightface_root: Path | None = Field(
        None, description="directory holding the insightface pack (default $INNOUT_INSIGHTFACE_ROOT or "
                          "~/.insightface/models)")
    insightface_pack: str = Field("buffalo_l", description="insightface model pack name")
    det_threshold: float | None = Field(
        None, description="minimum detection score (insightface probability, default 0.5; dlib HOG margin, "
                          "default 0.0)")
    det_size: int = Field(640, gt=0, description="insightface detector input size, pixels")
    dlib_upsample: int = Field(0, ge=0, description="dlib: upsampling passes before detection (finds faces "
                                                    "< 80 px, 4x slower each)")
    descriptors: bool = Field(True, description="compute identity descriptors for tracking")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="target selection and following")
    max_gap: int = Field(3, ge=0, description="longest run of frames without the face filled from neighbours "
                                              "without a warning (frames); longer runs are filled too, warned")
    ends: Literal["hold", "trim"] = Field(
        "hold", description="frames without a face before the first / after the last face: kept with the nearest "
                            "face's landmarks (status no_face) or dropped from the outputs; warned either way")
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig, description="temporal landmark smoothing")
    camera: Literal["estimate", "given"] = Field(
        "estimate", description="camera labels: fitted from landmarks, or read from the manifest (given backend)")


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
        warnings: one line per long gap or held / trimmed end.
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
    steps = []
    for t in range(len(frames)):
        f = _frame(frames, t)
        steps.append(tracker.step(t, backend.detect(f, t), f))
    return TrackResult([s.detection for s in steps], [s.status for s in steps], [s.n_faces for s in steps],
                       tracker.n_descriptors)


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


def fill_gaps(landmarks: np.ndarray, found: np.ndarray, max_gap: int, name: str | Path) -> np.ndarray:
    """Fill runs of frames without a face: linear interpolation between the neighbours inside the video, the
    nearest face at the ends. Runs of any length are filled (runs longer than `max_gap` are only warned about by
    `preprocess_video`); a video fails only when no frame has a face.

    Args:
        landmarks: [T, K, 2] (rows where `found` is False are ignored).
        found: [T] bool.
        max_gap: kept for the warning threshold (see `FaceConfig.max_gap`).
        name: the video, named in errors.
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
            w = (np.arange(t, end) - (t - 1)) / (end - (t - 1))
            lm[t:end] = (1 - w)[:, None, None] * lm[t - 1] + w[:, None, None] * lm[end]
    return lm


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
    ks = {d.landmarks.shape for d in tr.detections if d is not None}
    if len(ks) > 1:
        raise BadInputError(f"backend returned mixed landmark layouts {sorted(ks)}", name)
    k = ks.pop()[0] if ks else 68
    raw = np.full((n, k, 2), np.nan)
    for t, d in enumerate(tr.detections):
        if d is not None:
            raw[t] = d.landmarks
    found = np.array([d is not None for d in tr.detections], dtype=bool)
    filled = fill_gaps(raw, found, cfg.max_gap, name)
    first, last = int(np.argmax(found)), n - 1 - int(np.argmax(found[::-1]))
    kept = list(range(first, last + 1)) if cfg.ends == "trim" else list(range(n))
    return kept, smooth_landmarks(filled[kept], cfg.smoothing)


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
    ks = {d.landmarks.shape for d in tr.detections if d is not None}
    if len(ks) > 1:
        raise BadInputError(f"backend returned mixed landmark layouts {sorted(ks)}", name)
    k = ks.pop()[0] if ks else 68
    raw = np.full((n, k, 2), np.nan)
    for t, d in enumerate(tr.detections):
        if d is not None:
            raw[t] = d.landmarks
    found = np.array([d is not None for d in tr.detections])
    warnings = _gap_warnings(found, cfg, list(range(n)) if frame_ids is None else list(frame_ids))
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
