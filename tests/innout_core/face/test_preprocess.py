"""A short video made from skimage's astronaut with a known smooth motion plus per-frame sensor noise: tracking,
smoothing, a second face that must not steal the track, blanked frames, short and long gaps."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import skimage.data

from innout_core.errors import BadInputError
from innout_core.face.backends import Detection, FaceBackend
from innout_core.face.dlib_backend import DlibBackend
from innout_core.face.given import GivenBackend
from innout_core.face.preprocess import FaceConfig, fill_gaps, preprocess_video, track_video
from innout_core.synthetic.testclips import second_face_image
from innout_core.face.track import TrackingConfig, track_target

T, W, H = 12, 320, 256
FACE_CENTRE = np.array([223.0, 127.0])  # the astronaut's face in the 512² photograph


def _motion(t: int) -> np.ndarray:
    """[2, 3] affine photograph -> frame t: rotation -5°..+6°, scale 0.95..1.06, translation 2 px/frame."""
    ang, s = math.radians(-5 + t), 0.95 + 0.01 * t
    r = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    p = np.array([110 + 2.0 * t, 128 + 1.0 * t])
    return np.hstack([r, (p - r @ FACE_CENTRE)[:, None]])


@pytest.fixture(scope="module")
def scene():
    img = skimage.data.astronaut()
    backend = DlibBackend()
    ref = backend.detect(img, 0)[0].landmarks  # landmarks of the photograph, mapped by the known motion = truth
    rng = np.random.default_rng(0)
    frames, truth = [], []
    for t in range(T):
        m = _motion(t)
        f = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        f = np.clip(f + rng.normal(scale=6.0, size=f.shape), 0, 255).astype(np.uint8)  # per-frame jitter
        frames.append(f)
        truth.append(ref @ m[:, :2].T + m[:, 2])
    other = cv2.resize(second_face_image(), (125, 125), interpolation=cv2.INTER_CUBIC)  # the installed package's
    return backend, frames, np.stack(truth), other


def _blank(frame: np.ndarray, truth: np.ndarray) -> np.ndarray:
    f = frame.copy()
    x0, y0 = (truth.min(0) - 25).astype(int)
    x1, y1 = (truth.max(0) + 25).astype(int)
    f[max(y0, 0):y1, max(x0, 0):x1] = 128
    return f


def test_tracks_smooths_and_ignores_a_second_face(scene):
    backend, frames, truth, other = scene
    frames = [f.copy() for f in frames]
    for t in (3, 4, 5):  # a larger, different person appears on the right
        frames[t][60:185, 190:315] = other
    tr = track_video(frames, backend, FaceConfig(backend="dlib"))
    assert [tr.n_faces[t] for t in (3, 4, 5)] == [2, 2, 2]
    assert tr.status == ["ok"] * T
    for t, d in enumerate(tr.detections):  # every tracked face is the astronaut, never the pasted one
        assert np.abs(d.landmarks - truth[t]).mean() < 6.0

    res = preprocess_video(frames, backend, FaceConfig(backend="dlib"), name="astronaut.mp4", tracked=tr)
    raw_err = np.abs(res.raw_landmarks.numpy() - truth).mean()
    smooth_err = np.abs(res.landmarks.numpy() - truth).mean()
    assert smooth_err < raw_err, (smooth_err, raw_err)
    gauss = preprocess_video(frames, backend, FaceConfig(backend="dlib", smoothing={"method": "gaussian",
                                                                                      "sigma": 1.0}),
                             tracked=tr)
    assert np.abs(gauss.landmarks.numpy() - truth).mean() < raw_err
    assert res.crops.shape == (T, 3, 512, 512) and res.crops.dtype.is_floating_point is False
    assert res.cameras.shape == (T, 25) and res.quads.shape == (T, 4, 2)
    # the crop follows the face: its quad centre moves with the true motion, its side with the true scale
    centres = res.quads.numpy().mean(1)
    np.testing.assert_allclose(centres - centres[0], truth.mean(1) - truth[0].mean(0), atol=4.0)
    sides = res.quads.numpy()[:, 1, 0] - res.quads.numpy()[:, 0, 0]
    np.testing.assert_allclose(sides / sides[0], (0.95 + 0.01 * np.arange(T)) / 0.95, rtol=0.04)


def test_identity_free_tracking_also_holds(scene):
    backend, frames, truth, other = scene
    frames = [f.copy() for f in frames[:6]]
    for t in (2, 3):
        frames[t][60:185, 190:315] = other
    tr = track_video(frames, backend, FaceConfig(backend="dlib", tracking={"use_identity": False}))
    for t, d in enumerate(tr.detections):
        assert np.abs(d.landmarks - truth[t]).mean() < 6.0


def test_blanked_frames_are_no_face_and_short_gaps_filled(scene):
    backend, frames, truth, _ = scene
    frames = [f.copy() for f in frames]
    for t in (0, 7, 8):
        frames[t] = _blank(frames[t], truth[t])
    tr = track_video(frames, backend, FaceConfig(backend="dlib"))
    assert [t for t, s in enumerate(tr.status) if s == "no_face"] == [0, 7, 8]
    res = preprocess_video(frames, backend, FaceConfig(backend="dlib", max_gap=2, smoothing={"method": "none"}),
                           tracked=tr)
    assert [t for t, s in enumerate(res.status) if s == "filled"] == [7, 8]  # inside the video: interpolated
    assert res.status[0] == "no_face" and res.kept == list(range(T))  # at the start: held (default ends='hold')
    assert np.isnan(res.raw_landmarks.numpy()[[0, 7, 8]]).all()
    # interior gap: linear interpolation of the neighbours (true motion is smooth, so close to the truth)
    assert np.abs(res.landmarks.numpy()[[7, 8]] - truth[[7, 8]]).mean() < 5.0
    np.testing.assert_allclose(res.landmarks.numpy()[0], res.raw_landmarks.numpy()[1])  # end: nearest frame
    assert res.crops.shape[0] == T  # nothing dropped


def test_long_gap_is_filled_and_warned_not_failed(scene, caplog):
    backend, frames, truth, _ = scene
    frames = [(_blank(f, truth[t]) if 2 <= t <= 6 else f) for t, f in enumerate(frames)]
    with caplog.at_level("WARNING", logger="innout.face"):
        res = preprocess_video(frames, backend, FaceConfig(backend="dlib", max_gap=3), name="clip_007.mp4")
    assert res.status[2:7] == ["filled"] * 5 and res.crops.shape[0] == T
    assert len(res.warnings) == 1 and "frames 2-6" in res.warnings[0] and "max_gap=3" in res.warnings[0]
    assert any(r.getMessage().startswith("clip_007.mp4: no face in frames 2-6") for r in caplog.records)
    with pytest.raises(BadInputError, match="no face found in any"):
        preprocess_video([_blank(f, truth[t]) for t, f in enumerate(frames[:3])], backend,
                         FaceConfig(backend="dlib"), name="clip_008.mp4")


def test_fill_gaps_rules():
    lm = np.arange(6, dtype=float)[:, None, None] * np.ones((1, 5, 2))
    found = np.array([False, True, False, False, True, False])
    out = fill_gaps(lm, found, 2, "v", method="linear")
    np.testing.assert_allclose(out[:, 0, 0], [1, 1, 2, 3, 4, 4])
    np.testing.assert_allclose(fill_gaps(lm, found, 2, "v")[:, 0, 0], [1, 1, 2, 3, 4, 4])  # motion: a line stays
    with pytest.raises(BadInputError, match="no face found in any"):
        fill_gaps(lm, np.zeros(6, bool), 2, "v")


def test_fill_follows_a_curved_path_not_the_chord():
    """A face on a circle (radius 60 px, one turn per 30 frames) missing for 8 frames: the motion fill stays near
    the arc, the straight line cuts across it."""
    t = np.arange(40, dtype=float)
    ang = 2 * np.pi * t / 30
    centre = np.stack([300 + 60 * np.cos(ang), 240 + 60 * np.sin(ang)], -1)
    lm = centre[:, None, :] + np.random.default_rng(3).uniform(-40, 40, size=(1, 68, 2))
    found = np.ones(40, bool)
    found[15:23] = False
    err = lambda x: np.linalg.norm(x - lm, axis=-1).mean(-1)[15:23].max()  # noqa: E731
    motion_err, linear_err = err(fill_gaps(lm, found, 3, "v")), err(fill_gaps(lm, found, 3, "v", method="linear"))
    assert motion_err < 0.25 * linear_err and motion_err < 8.0, (motion_err, linear_err)


class _FakeIdentityBackend(FaceBackend):
    """Test-only backend: identity = descriptor distance, threshold 0.5."""

    identity_threshold = 0.5

    def detect(self, frame, index):  # pragma: no cover - track_target is called directly
        return []


def _det(x: float, size: float, ident: float) -> Detection:
    return Detection(box=np.array([x, 0, x + size, size]), score=1.0, landmarks=np.zeros((5, 2)),
                     descriptor=np.array([ident], np.float32))


def test_track_target_identity_rules():
    b = _FakeIdentityBackend()
    seq = [[_det(0, 50, 0.0)], [_det(2, 50, 0.1), _det(200, 90, 5.0)], [_det(200, 90, 5.0)],
           [_det(300, 50, 0.05)]]
    out = track_target(seq, b, TrackingConfig(), (100, 400))
    assert out[1].box[0] == 2  # the larger face is a different person
    assert out[2] is None  # target gone, the other person does not steal the track
    assert out[3].box[0] == 300  # re-acquired by identity after the loss
    # without identity, the box overlap alone keeps the track and rejects the far face
    out = track_target(seq, b, TrackingConfig(use_identity=False), (100, 400))
    assert out[1].box[0] == 2 and out[2] is None and out[3] is None


def test_given_backend_with_given_cameras(scene, tmp_path):
    _, frames, truth, _ = scene
    lm = truth[:4].copy()
    lm[2] = np.nan
    np.save(tmp_path / "lm.npy", lm)
    cams = np.tile(np.r_[np.eye(4).reshape(-1), [4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]], (4, 1))
    labels = [[f"{i:04d}.png", c.tolist()] for i, c in enumerate(cams)]
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}))
    given = GivenBackend.from_files(tmp_path / "lm.npy", tmp_path / "dataset.json")
    res = preprocess_video(frames[:4], given, FaceConfig(backend="given", camera="given",
                                                         smoothing={"method": "none"}))
    assert res.status == ["ok", "ok", "filled", "ok"]
    np.testing.assert_allclose(res.cameras.numpy(), cams, atol=1e-6)
    motion_err = np.abs(res.landmarks.numpy()[2] - truth[2]).mean()  # filled along the motion of frames 0-1, 3
    assert motion_err < 0.5 * np.abs((truth[1] + truth[3]) / 2 - truth[2]).mean()
    with pytest.raises(BadInputError, match="cameras"):
        GivenBackend(lm, cameras=np.zeros((3, 25)), source="m.yaml")
