"""Motion model pieces of the tracker: the landmark-to-box relation, constant-velocity extrapolation, and the
keyframe-anchored image motion (against transforms known by construction)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from innout_core.face.backends import Detection, FaceBackend
from innout_core.face.motion import BoxModel, KeyframeFlow, extrapolate_landmarks, interocular
from innout_core.face.testclips import astronaut
from innout_core.face.track import Tracker, TrackingConfig


def _face_landmarks() -> np.ndarray:
    rng = np.random.default_rng(0)
    lm = rng.uniform(180, 270, size=(68, 2))
    lm[36], lm[45] = [190, 120], [255, 120]
    return lm


def test_box_model_carries_the_detector_box_through_similarity_motion():
    lm = _face_landmarks()
    box = np.array([170.0, 90.0, 280.0, 210.0])
    bm = BoxModel()
    np.testing.assert_allclose(bm.box(lm), np.r_[lm.min(0), lm.max(0)])  # before any detection: the bounding box
    bm.observe(lm, box)
    np.testing.assert_allclose(bm.box(lm), box, atol=1e-9)
    moved = lm * 1.5 + [30.0, -10.0]  # scale and translation (axis-aligned boxes follow exactly)
    np.testing.assert_allclose(bm.box(moved), box * 1.5 + [30.0, -10.0, 30.0, -10.0], atol=1e-9)


def test_extrapolation_is_exact_on_constant_velocity():
    lm = _face_landmarks()
    v = np.array([2.5, -1.0])
    seq = [lm + v * t for t in (3, 4, 5)]
    np.testing.assert_allclose(extrapolate_landmarks([3, 4, 5], seq, 8), lm + v * 8, atol=1e-9)
    np.testing.assert_allclose(extrapolate_landmarks([5], seq[-1:], 8), seq[-1])


def test_keyframe_flow_recovers_a_known_similarity_and_refuses_a_blank():
    img = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    lm = np.array([[183.0, 100.0], [265.0, 100.0], [223.0, 127.0], [195.0, 160.0], [250.0, 160.0]])
    lm = np.concatenate([lm, np.random.default_rng(1).uniform(185, 260, size=(63, 2))])
    lm[36], lm[45] = [190.0, 110.0], [255.0, 110.0]
    ang = np.radians(4.0)
    m = 1.05 * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    mat = np.hstack([m, (np.array([230.0, 130.0]) - m @ [223.0, 127.0] + [6.0, -4.0])[:, None]])
    moved = cv2.warpAffine(img, mat, img.shape[::-1], flags=cv2.INTER_CUBIC)
    truth = lm @ mat[:, :2].T + mat[:, 2]
    flow = KeyframeFlow(img, lm)
    res = flow.track(moved, guess=truth + 2.0)  # a rough guess, 2 px off
    assert res is not None and res.inliers >= 30
    assert np.abs(res.landmarks - truth).max() < 0.05 * interocular(lm)
    assert flow.track(np.full_like(img, 128), guess=truth) is None  # no texture to follow: no motion
    assert flow.track(moved, guess=truth + 25.0) is None  # a motion far from where the face can be is refused


class _Scripted(FaceBackend):
    identity_threshold = 0.5

    def detect(self, frame, index):  # pragma: no cover - Tracker.step is called directly
        return []


def test_tracker_refuses_frames_out_of_order():
    tr = Tracker(_Scripted(), TrackingConfig(), (100, 100))
    d = Detection(box=np.array([0.0, 0, 50, 50]), score=1.0, landmarks=_face_landmarks() / 5, descriptor=None)
    tr.step(0, [d])
    with pytest.raises(ValueError, match="in order"):
        tr.step(0, [d])
