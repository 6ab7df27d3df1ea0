"""Follow one person through a video, frame by frame: match the detector's faces to the track's predicted box
(overlap first, identity descriptors only when overlap does not decide), and keep the landmarks through detector
misses by running the landmark model on the predicted box and accepting it only when it is plausible.

Per-frame status: ``ok`` (a detection of the target), ``predicted`` (the last detection's landmarks carried by the
measured image motion of the face, accepted when the landmark model run on the box they give agrees), ``no_face``
(nothing acceptable; filled later).

The target is chosen by landmark-fit quality (does the landmark model stay put when its box is nudged: it does on a
face, it follows the box on clothing) and then detector score; a track whose face never fitted well moves to a
face that does, detected in `confirm_frames` consecutive frames, and reports the change (`Tracker.switches`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from innout_core.settings.face import TrackingConfig

from .backends import Detection, FaceBackend, box_iou
from .motion import (BoxModel, ChainFlow, KeyframeFlow, extrapolate_landmarks, extrapolate_similarity, interocular,
                     similarity_fit)

__all__ = ["TrackingConfig", "TrackStep", "Tracker", "Switch", "fit_shift", "track_target"]

TrackStatus = Literal["ok", "predicted", "no_face"]


@dataclass
class Switch:
    """The track moved to another face: at frame `frame`, to a face first seen at frame `since` (frames before
    `since` are re-tracked backwards from it by `preprocess.track_video`); `detections` are the new face's
    detections in frames `since..frame`."""

    frame: int
    since: int
    detections: list[tuple[int, Detection]]


@dataclass
class TrackStep:
    """One frame of the track: the target (None when `status == 'no_face'`) and every face the detector found."""

    detection: Detection | None
    status: TrackStatus
    n_faces: int


def fit_shift(backend: FaceBackend, frame: np.ndarray, det: Detection) -> float:
    """How far the landmark model's points move when its box is nudged (10 % of the box left, right, up, down,
    10 % larger and smaller): median over the six of the mean point shift / inter-ocular distance. About 0.01 on a
    face (the model locks onto it), 0.1-0.3 on a false detection (the points follow the box). NaN when the backend
    has no landmark model of its own."""
    b = np.asarray(det.box, np.float64)
    w, h = b[2] - b[0], b[3] - b[1]
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    iod = max(interocular(det.landmarks), 1.0)
    shifts = []
    for dx, dy, s in ((0.1, 0, 1), (-0.1, 0, 1), (0, 0.1, 1), (0, -0.1, 1), (0, 0, 1.1), (0, 0, 1 / 1.1)):
        x, y = cx + dx * w, cy + dy * h
        c = backend.landmarks_in_box(frame, np.array([x - w * s / 2, y - h * s / 2, x + w * s / 2, y + h * s / 2]))
        if c is None or c.landmarks.shape != det.landmarks.shape:
            return float("nan")
        shifts.append(np.linalg.norm(c.landmarks - det.landmarks, axis=1).mean() / iod)
    return float(np.median(shifts))


def _select_first(dets: Sequence[Detection], how: str, shape: tuple[int, int],
                  fits: Sequence[bool] | None = None) -> Detection:
    if how == "quality" and fits is not None:
        good = [d for d, f in zip(dets, fits) if f]
        return max(good or dets, key=lambda d: d.score)
    if how in ("score", "quality"):
        return max(dets, key=lambda d: d.score)
    if how == "center":
        cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
        return min(dets, key=lambda d: np.hypot((d.box[0] + d.box[2]) / 2 - cx, (d.box[1] + d.box[3]) / 2 - cy))
    return max(dets, key=lambda d: d.area)


class Tracker:
    """Online tracker: call :meth:`step` once per frame in order.

    Args:
        backend: detector/landmark backend (supplies descriptors, `landmarks_in_box`, identity threshold).
        cfg: `TrackingConfig`.
        frame_shape: (H, W) of the frames.
    """

    def __init__(self, backend: FaceBackend, cfg: TrackingConfig, frame_shape: tuple[int, int]) -> None:
        self.backend, self.cfg, self.shape = backend, cfg, frame_shape
        self.boxes = BoxModel()
        self.hist: deque[tuple[int, np.ndarray]] = deque(maxlen=cfg.history)
        self.last_box: np.ndarray | None = None
        self.last_t = -10**9
        self.last_detected = False
        self.descs: list[np.ndarray] = []
        self.rejected: list[tuple[np.ndarray, int]] = []  # (box, frame of the descriptor check)
        self.key: KeyframeFlow | None = None  # the last detection's frame, for the image motion since then
        self.n_descriptors = 0  # descriptors computed (cost counter)
        self.t = -1
        self._can_predict = type(backend).landmarks_in_box is not FaceBackend.landmarks_in_box
        self.allow_switch = cfg.select == "quality" and self._can_predict
        self.n_fit = 0  # detections of the target whose landmarks fit (see `fit_shift`)
        self.cands: list[list[tuple[int, Detection]]] = []  # other faces that fit, by consecutive frames
        self.switches: list[Switch] = []
        self._fit_cache: dict[int, bool] = {}  # fit of each detection of the current frame, by id

    # ---------------------------------------------------------------------------------------------- helpers

    def _descriptor(self, det: Detection) -> np.ndarray | None:
        if det.descriptor is None and det.describe is not None:
            self.n_descriptors += 1
        return det.get_descriptor()

    def _reference(self) -> np.ndarray | None:
        return np.mean(self.descs, axis=0) if self.descs else None

    def _predicted_landmarks(self, t: int) -> np.ndarray | None:
        if not self.hist or t - self.hist[-1][0] > self.cfg.max_coast + 1:
            return None
        times, lms = zip(*self.hist)
        fn = extrapolate_similarity if self.cfg.motion == "similarity" else extrapolate_landmarks
        return fn(list(times), list(lms), t)

    def _predicted_box(self, t: int) -> np.ndarray | None:
        lm = self._predicted_landmarks(t)
        return self.boxes.box(lm) if lm is not None and self.boxes.ready else self.last_box

    def _accept(self, t: int, det: Detection, detected: bool, gray: np.ndarray | None) -> None:
        if detected:
            self.key = None
            if gray is not None:
                self.key = (ChainFlow(gray, det.landmarks, anchor=self.cfg.anchor,
                                                      replenish=self.cfg.replenish) if self.cfg.flow == "chain"
                            else KeyframeFlow(gray, det.landmarks))
            self.boxes.observe(det.landmarks, det.box)
            if det.descriptor is not None:
                self.descs.append(det.descriptor)
        if self.hist and self.hist[-1][0] != t - 1:
            self.hist.clear()  # the constant-velocity model spans one unbroken run
        self.hist.append((t, np.asarray(det.landmarks, np.float64)))
        self.last_box, self.last_t, self.last_detected = np.asarray(det.box, np.float64), t, detected

    # ---------------------------------------------------------------------------------------------- matching

    def _match(self, t: int, cands: Sequence[Detection]) -> Detection | None:
        cfg = self.cfg
        pred = self._predicted_box(t)
        held = self.last_t == t - 1 and self.last_detected  # detected in the previous frame: it cannot jump away
        ref = self._reference() if cfg.use_identity else None
        thr = self.backend.identity_threshold
        rejected_now: list[tuple[np.ndarray, int]] = []
        best: tuple[float, float] | None = None
        chosen = None
        for det in cands:
            iou = box_iou(pred, det.box) if pred is not None else 0.0
            dist = 0.0
            if iou >= cfg.decide_iou:
                ok = True
            elif held and iou <= 0.0:
                ok = False
            else:
                prior = next((tc for b, tc in self.rejected if box_iou(b, det.box) >= 0.5
                              and t - tc <= cfg.recheck_every), None)
                if prior is not None:  # where a non-target face was last frame: still not the target
                    rejected_now.append((det.box, prior))
                    continue
                desc = self._descriptor(det) if ref is not None else None
                if desc is not None:
                    dist = self.backend.identity_distance(ref, desc)
                    ok = dist <= thr
                    if not ok:
                        rejected_now.append((det.box, t))
                else:
                    ok = iou >= cfg.min_iou
            key = (iou, -dist)
            if ok and (best is None or key > best):
                best, chosen = key, det
        self.rejected = rejected_now
        return chosen

    # ---------------------------------------------------------------------------------------------- prediction

    def _predict(self, t: int, frame: np.ndarray, gray: np.ndarray) -> Detection | None:
        """The target where the detector found nothing acceptable: the last detection's landmarks carried by the
        measured image motion of the face (no motion measured = no prediction: a blanked or fully covered face is
        not invented), kept when the landmark model, run on the box they give, agrees on enough points."""
        cfg = self.cfg
        if self.key is None:
            return None
        flow = self.key.track(gray, self._predicted_landmarks(t), max_jump=cfg.max_jump)
        if flow is None:
            return None
        prior = flow.landmarks
        cand = self.backend.landmarks_in_box(frame, self.boxes.box(prior))
        if cand is None or cand.landmarks.shape != prior.shape:
            return None
        iod = max(interocular(prior), 1.0)
        agree = np.linalg.norm(cand.landmarks - prior, axis=1) <= cfg.agree_iod * iod
        if agree.mean() < cfg.min_agree:
            return None
        if cfg.refine and agree.sum() >= 6:
            m = similarity_fit(prior[agree], cand.landmarks[agree])
            prior = prior @ m[:, :2].T + m[:, 2]
        return Detection(box=self.boxes.box(prior), score=float("nan"), landmarks=prior, descriptor=None)

    # ---------------------------------------------------------------------------------------------- choosing

    def _fits(self, frame: np.ndarray | None, det: Detection) -> bool:
        if frame is None or not self._can_predict:
            return True
        key = id(det)
        if key not in self._fit_cache:
            self._fit_cache[key] = bool(fit_shift(self.backend, frame, det) <= self.cfg.max_fit_shift)
        return self._fit_cache[key]

    def _start(self, t: int, det: Detection, gray: np.ndarray | None, fits: bool) -> None:
        self.boxes, self.hist, self.descs, self.rejected = BoxModel(), deque(maxlen=self.cfg.history), [], []
        self.n_fit, self.cands = int(fits), []
        if self.cfg.use_identity:
            self._descriptor(det)
        self._accept(t, det, detected=True, gray=gray)

    def _consider_others(self, t: int, dets: Sequence[Detection], target: Detection | None,
                         frame: np.ndarray, gray: np.ndarray) -> Detection | None:
        """While the track is unconfirmed: follow the other faces that fit; one that fits in `confirm_frames`
        consecutive frames (and more often than the target) takes the track over. Returns it, or None."""
        cfg = self.cfg
        alive: list[list[tuple[int, Detection]]] = []
        for det in dets:
            if det is target or not self._fits(frame, det):
                continue
            run = next((c for c in self.cands if c[-1][0] == t - 1 and box_iou(c[-1][1].box, det.box) >= 0.3), None)
            alive.append((run or []) + [(t, det)])
        self.cands = alive
        best = max(alive, key=len, default=None)
        if best is None or len(best) < cfg.confirm_frames or len(best) <= self.n_fit:
            return None
        self.switches.append(Switch(frame=t, since=best[0][0], detections=list(best)))
        self._start(t, best[-1][1], gray, fits=True)
        self.n_fit = len(best)
        return best[-1][1]

    # ---------------------------------------------------------------------------------------------- one frame

    def step(self, t: int, dets: Sequence[Detection], frame: np.ndarray | None = None) -> TrackStep:
        """Advance to frame `t` with the detector's faces `dets`; `frame` ([H, W, 3] uint8 RGB) enables tracking
        through misses (without it a missed frame is `no_face`)."""
        if t <= self.t:
            raise ValueError(f"Tracker.step: frames must come in order (got {t} after {self.t})")
        self.t = t
        self._fit_cache = {}
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame is not None else None
        out = TrackStep(None, "no_face", len(dets))
        unconfirmed = self.allow_switch and frame is not None and self.n_fit < self.cfg.confirm_frames
        if self.last_box is None:  # not started: the first face found picks the target
            if dets:
                fits = [self._fits(frame, d) for d in dets] if self.cfg.select == "quality" else None
                target = _select_first(dets, self.cfg.select, self.shape, fits)
                self._start(t, target, gray, fits=self._fits(frame, target) if fits else True)
                out = TrackStep(target, "ok", len(dets))
        elif (det := self._match(t, dets)) is not None:
            self._accept(t, det, detected=True, gray=gray)
            if unconfirmed and self._fits(frame, det):
                self.n_fit += 1
            out = TrackStep(det, "ok", len(dets))
        elif (self.cfg.predict and self._can_predict and frame is not None
              and (det := self._predict(t, frame, gray)) is not None):
            self._accept(t, det, detected=False, gray=gray)
            out = TrackStep(det, "predicted", len(dets))
        if unconfirmed and dets:
            assert frame is not None and gray is not None
            new = self._consider_others(t, dets, out.detection, frame, gray)
            if new is not None:
                out = TrackStep(new, "ok", len(dets))
        return out


def track_target(detections: Sequence[Sequence[Detection]], backend: FaceBackend, cfg: TrackingConfig,
                 frame_shape: tuple[int, int]) -> list[Detection | None]:
    """Follow the target through precomputed detections only (no frames, so no tracking through misses).

    Args:
        detections: per frame, every face found.
        backend: supplies `identity_distance` and `identity_threshold`.
        frame_shape: (H, W) of the frames (for `select='center'`).
    Returns:
        per frame the target's detection, or None (target not found).
    """
    tracker = Tracker(backend, cfg, frame_shape)
    return [tracker.step(t, d).detection for t, d in enumerate(detections)]
