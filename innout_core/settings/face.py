"""Typed settings of the face stage: detection backend, target tracking, landmark smoothing, camera source."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from innout_core.settings.base import StageSettings

__all__ = ["FaceConfig", "SmoothingConfig", "TrackingConfig"]


class SmoothingConfig(BaseModel):
    """How per-frame landmarks are smoothed over time before cropping and camera estimation."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["kalman", "box", "gaussian", "savgol", "one_euro", "none"] = Field(
        "kalman", description="'kalman' = constant-velocity Kalman + RTS smoother, 'box' = official "
                              "smooth_video_lms.py mean filter, 'gaussian' = centred Gaussian, 'savgol' = "
                              "Savitzky-Golay, 'one_euro' = One-Euro filter")
    accel: float = Field(0.1, gt=0, description="kalman: process noise, the acceleration's standard deviation "
                                                 "(inter-ocular distances per frame²)")
    noise: float = Field(0.02, gt=0, description="kalman: measurement noise, the landmarks' standard deviation "
                                                 "per coordinate (inter-ocular distances)")
    n_pre: int = Field(1, ge=0, description="box: frames before the current one in the window (official 1)")
    n_next: int = Field(1, ge=0, description="box: frames after the current one in the window (official 1)")
    sigma: float = Field(1.0, gt=0, description="gaussian: standard deviation, in frames")
    truncate: float = Field(3.0, gt=0, description="gaussian: window half-width in standard deviations")
    window: int = Field(11, ge=3, description="savgol: window length in frames (odd)")
    polyorder: int = Field(3, ge=0, description="savgol: polynomial order (< window)")
    min_cutoff: float = Field(0.05, gt=0, description="one_euro: cut-off at rest, cycles per frame")
    beta: float = Field(30.0, ge=0, description="one_euro: cut-off increase per unit speed (cycles per frame per "
                                                "inter-ocular distance per frame)")
    d_cutoff: float = Field(0.3, gt=0, description="one_euro: cut-off of the speed estimate, cycles per frame")


class TrackingConfig(BaseModel):
    """How the target face is chosen and followed when a frame holds several faces or none."""

    model_config = ConfigDict(extra="forbid")

    select: Literal["quality", "largest", "score", "center"] = Field(
        "quality", description="target in the first frame with a face: the best-scored face among those whose "
                               "landmarks fit (see max_fit_shift), largest box, best score, or nearest centre")
    max_fit_shift: float = Field(0.06, gt=0, description="a detection's landmarks fit a face when the landmark "
                                                         "model, run on its box nudged by 10 % (6 ways), moves them "
                                                         "by at most this many inter-ocular distances (median)")
    confirm_frames: int = Field(3, ge=1, description="a track is confirmed after this many detections that fit; "
                                                     "until then a face that fits in this many consecutive "
                                                     "frames takes the track over (the frames before are "
                                                     "re-tracked on it)")
    min_iou: float = Field(0.2, ge=0, le=1, description="box overlap with the predicted box to continue the "
                                                       "track when identity is unavailable (IoU, unitless)")
    use_identity: bool = Field(True, description="reject faces whose descriptor is not the target's identity and "
                                                 "re-acquire the target anywhere after a loss")
    decide_iou: float = Field(0.5, ge=0, le=1, description="a face overlapping the predicted box at least this much "
                                                           "(IoU) is the target without comparing descriptors; "
                                                           "one with no overlap right after a detection is not")
    recheck_every: int = Field(15, ge=1, description="a face where the previous frame's face was rejected by its "
                                                     "descriptor is rejected again without one, for at most this "
                                                     "many frames (frames)")
    predict: bool = Field(True, description="track through detector misses: the last detection's landmarks moved by "
                                            "the face's measured image motion, kept when the landmark model run on "
                                            "their box agrees (else the frame is filled by interpolation)")
    history: int = Field(2, ge=1, description="frames in the constant-velocity motion model (the predicted box "
                                              "for matching, and the image motion's starting guess)")
    motion: Literal["similarity", "points"] = Field(
        "similarity", description="constant-velocity model of the face's position, rotation and scale, or of each "
                                  "landmark on its own")
    flow: Literal["chain", "keyframe"] = Field(
        "chain", description="image motion through a miss: corners followed frame to frame from the last "
                             "detection and re-anchored on it, or tracked straight from the last detection")
    anchor: bool = Field(False, description="chain: snap each corner to its straight track from the last "
                                           "detection where the two agree (no drift)")
    replenish: float = Field(0.6, ge=0, le=1, description="chain: take new corners from the current frame's face "
                                                          "when fewer than this fraction of the first corners are "
                                                          "still followed (0 = never)")
    refine: bool = Field(False, description="predicted frames: move the tracked landmarks by the similarity that "
                                           "best fits them to the landmark model's agreeing points")
    max_coast: int = Field(10, ge=0, description="frames after the last face over which the box is still "
                                                 "extrapolated for matching (frames)")
    agree_iod: float = Field(0.1, gt=0, description="a landmark of the landmark model agrees with the motion "
                                                    "prediction within this fraction of the inter-ocular distance")
    max_jump: float = Field(0.5, gt=0, description="image motion refused when it moves the landmarks further than "
                                                  "this many inter-ocular distances (mean) from the constant-"
                                                  "velocity prediction (it followed something else)")
    min_agree: float = Field(0.25, ge=0, le=1, description="fraction of landmarks of the landmark model that must "
                                                           "agree with the image motion to accept a predicted "
                                                           "frame")


class FaceConfig(StageSettings):
    """Face preprocessing stage: backend, tracking, gap filling, smoothing, camera source."""

    section = "face"

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
    fill: Literal["motion", "linear"] = Field(
        "motion", description="frames without the face inside the video: along the motion on both sides (cubic "
                              "Hermite through the neighbours' positions and velocities) or a straight line")
    ends: Literal["hold", "trim"] = Field(
        "hold", description="frames without a face before the first / after the last face: kept with the nearest "
                            "face's landmarks (status no_face) or dropped from the outputs; warned either way")
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig, description="temporal landmark smoothing")
    camera: Literal["estimate", "given"] = Field(
        "estimate", description="camera labels: fitted from landmarks, or read from the manifest (given backend)")
