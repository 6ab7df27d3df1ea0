"""Motion model pieces of the tracker: the landmark-to-box relation, constant-velocity extrapolation, and the
keyframe-anchored image motion (against transforms known by construction)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from innout_core.face.backends import Detection, FaceBackend
from innout_core.face.dlib_backend import DlibBackend
from innout_core.face.motion import (BoxModel, ChainFlow, KeyframeFlow, extrapolate_landmarks, extrapolate_similarity,
                                     interocular, similarity_fit)
from innout_core.synthetic.testclips import FalseDetections, astronaut
from innout_core.face.track import Tracker, TrackingConfig, fit_shift


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


def _similarity(angle_deg: float, scale: float, shift: tuple[float, float], centre=(223.0, 127.0)) -> np.ndarray:
    a = np.radians(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([r, (np.asarray(centre) + shift - r @ np.asarray(centre))[:, None]])


def test_similarity_fit_and_extrapolation_follow_a_turning_zooming_face():
    lm = _face_landmarks()
    m = _similarity(7.0, 1.1, (5.0, -3.0))
    np.testing.assert_allclose(similarity_fit(lm, lm @ m[:, :2].T + m[:, 2]), m, atol=1e-9)
    # constant velocity of rotation (3°/frame), log-scale (2 %/frame) and centre: exact for the similarity model,
    # not for per-point lines (they cut the chord of the turn)
    c = lm.mean(0)
    seq = [lm @ (mt := _similarity(3.0 * t, 1.02 ** t, (6.0 * t, -2.0 * t), c))[:, :2].T + mt[:, 2] for t in range(8)]
    pred = extrapolate_similarity([4, 5, 6], seq[4:7], 7)
    np.testing.assert_allclose(pred, seq[7], atol=1e-6)
    err_points = np.abs(extrapolate_landmarks([4, 5, 6], seq[4:7], 7) - seq[7]).max()
    assert err_points > 0.5, err_points
    np.testing.assert_allclose(extrapolate_similarity([6], seq[6:7], 9), seq[6])


def test_chain_flow_follows_fast_turning_motion_that_the_keyframe_flow_loses():
    """15 frames of a fast head (12 px and 1.5° per frame, zooming 1 %/frame): corners followed frame to frame
    stay on the face; tracked straight from the first frame (whose patches no longer match) they do not."""
    img = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    lm = DlibBackend().detect(astronaut(), 0)[0].landmarks
    frames, truth = [], []
    for t in range(16):
        m = _similarity(1.5 * t, 1.01 ** t, (12.0 * t * 0.5, 6.0 * t * 0.5))
        frames.append(cv2.warpAffine(img, m, img.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        truth.append(lm @ m[:, :2].T + m[:, 2])
    chain, key = ChainFlow(frames[0], truth[0]), KeyframeFlow(frames[0], truth[0])
    iod = interocular(truth[0])
    for t in range(1, 16):
        guess = extrapolate_similarity([t - 2, t - 1], truth[max(t - 2, 0):t], t) if t > 1 else truth[0]
        res = chain.track(frames[t], guess, max_jump=0.5)
        assert res is not None, t
        assert np.linalg.norm(res.landmarks - truth[t], axis=1).mean() < 0.04 * iod, t  # drift < NME 0.04
    last = key.track(frames[15], truth[0], max_jump=10.0)  # no motion guess: as the old keyframe flow began
    assert last is None or np.linalg.norm(last.landmarks - truth[15], axis=1).mean() > 0.1 * iod
    assert ChainFlow(frames[0], truth[0]).track(np.full_like(img, 128), truth[1]) is None  # blank: no motion


def test_fit_shift_tells_a_face_from_a_box_on_clothing():
    backend = DlibBackend()
    img = astronaut()
    face = backend.detect(img, 0)[0]
    fake = FalseDetections(backend, np.array([[40.0, 200.0, 135.0, 295.0]]), score=5.0).detect(img, 0)
    assert fake[0].score == 5.0 and len(fake) == 2  # the false face first (higher score), then the real one
    thr = TrackingConfig().max_fit_shift
    assert fit_shift(backend, img, face) < 0.5 * thr
    assert fit_shift(backend, img, fake[0]) > thr


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
