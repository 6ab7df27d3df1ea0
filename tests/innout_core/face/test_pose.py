"""Camera estimation from landmarks: known LookAt poses (yaw/pitch within ±40°) are recovered within 2°, and the
label equals the official conversion (docs/method.md §1.6) written independently here."""

from __future__ import annotations

import math

import numpy as np
import torch

from innout_core.eg3d.camera import lookat_cam2world, yaw_pitch_from_cam2world
from innout_core.face.align import LM3D_STD
from innout_core.face.landmarks import landmarks68_to_5
from innout_core.face.pose import (OFFICIAL_OFFSET, OFFICIAL_SCALE, compute_rotation, estimate_head_pose,
                                   estimate_labels, label_from_angle_trans, mean_face_68, yaw_pitch_from_label)


def _project(points_world: np.ndarray, cam2world: np.ndarray, size: int = 512) -> np.ndarray:
    """Pinhole projection with EG3D's normalised intrinsics (4.2647, 0.5) into pixel-index coords."""
    f = 4.2647 * size
    xc = (points_world - cam2world[:3, 3]) @ cam2world[:3, :3]
    return xc[:, :2] / xc[:, 2:] * f + (0.5 * size - 0.5)


def _official_label(angle: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """docs/method.md §1.6, §9: R = (Rz Ry Rx)^T, t_z - 10, c = -R t, ×0.27, +0.006 y, +0.161 z, R diag(1,-1,-1),
    radius 2.7, K = [4.2647, 0, 0.5; 0, 4.2647, 0.5; 0, 0, 1]."""
    a, b, g = angle
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
    r = (rz @ ry @ rx).T
    t = np.array(trans, float)
    t[2] -= 10
    c = -r @ t * 0.27 + np.array([0, 0.006, 0.161])
    c = 2.7 * c / np.linalg.norm(c)
    pose = np.eye(4)
    pose[:3, :3] = r @ np.diag([1, -1, -1])
    pose[:3, 3] = c
    k = np.array([[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]])
    return np.concatenate([pose.reshape(-1), k.reshape(-1)])


def test_mean_face_is_in_bfm_frame():
    m = mean_face_68()
    assert m.shape == (68, 3)
    # its 5-point reduction sits on Deep3DFaceRecon's standard landmarks (within a centimetre: a different mean)
    assert np.abs(landmarks68_to_5(m) - LM3D_STD).max() < 0.1
    assert m[30, 2] > m[0, 2] + 0.3  # nose tip toward the camera (+z)
    assert m[8, 1] < m[27, 1]  # chin below the nose bridge (+y up)


def test_compute_rotation_matches_deep3d_convention():
    ang = np.array([0.1, -0.3, 0.2])
    r = compute_rotation(ang)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    # yaw-only: a row vector x-axis posed as X @ R turns toward -z for beta > 0 ((Ry)^T)
    ry = compute_rotation(np.array([0.0, 0.4, 0.0]))
    np.testing.assert_allclose(np.array([1.0, 0, 0]) @ ry, [math.cos(0.4), 0, -math.sin(0.4)], atol=1e-12)


def test_known_poses_recovered_within_2_degrees():
    rng = np.random.default_rng(0)
    world = OFFICIAL_SCALE * mean_face_68() + np.asarray(OFFICIAL_OFFSET)  # the face in EG3D world units
    yaws = np.radians([-40, -25, -10, 0, 15, 30, 40, 35, -35])
    pitches = np.radians([0, 20, -30, 0, 40, -15, -40, 25, 10])
    errs = []
    for yaw, pitch in zip(yaws, pitches):
        cam = lookat_cam2world(float(yaw), float(pitch))[0].double().numpy()
        lm = _project(world, cam) + rng.normal(scale=1.0, size=(68, 2))  # 1 px landmark noise
        label, (pose,) = estimate_labels(lm[None])
        y, p = yaw_pitch_from_label(label)
        errs.append((math.degrees(float(y) - yaw), math.degrees(float(p) - pitch)))
        # the label is the official conversion of the fitted Deep3DFaceRecon pose
        np.testing.assert_allclose(label[0].numpy(), _official_label(pose.angle, pose.trans), atol=1e-5)
        assert pose.rms_px < 2.0
    assert np.abs(errs).max() < 2.0, errs


def test_yaw_pitch_from_label_agrees_with_camera_module():
    yaw, pitch = torch.tensor([0.3, -0.5, 0.0]), torch.tensor([-0.2, 0.4, 0.1])
    cams = lookat_cam2world(yaw, pitch)
    ref = yaw_pitch_from_cam2world(cams)
    label = torch.cat([cams.reshape(3, 16), torch.zeros(3, 9)], 1)
    got = yaw_pitch_from_label(label)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=0)


def test_frontal_pose_gives_canonical_label_and_five_point_fit():
    # Deep3DFaceRecon frontal pose (angle 0, trans 0) -> camera on +z, OpenCV axes (x, -y, -z)
    label = label_from_angle_trans(np.zeros(3), np.zeros(3))[0].numpy()
    c = np.array([0, 0.006, 10 * 0.27 + 0.161])
    c = 2.7 * c / np.linalg.norm(c)
    expect = [1, 0, 0, c[0], 0, -1, 0, c[1], 0, 0, -1, c[2], 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]
    np.testing.assert_allclose(label, expect, atol=1e-6)
    # 5-point landmarks use the standard 5 BFM points: an exact projection is fitted exactly
    world = OFFICIAL_SCALE * LM3D_STD + np.asarray(OFFICIAL_OFFSET)
    cam = lookat_cam2world(0.2, -0.1)[0].double().numpy()
    pose = estimate_head_pose(_project(world, cam))
    assert pose.rms_px < 1e-3
    np.testing.assert_allclose(label_from_angle_trans(pose.angle, pose.trans)[0, :16].numpy(), cam.reshape(-1),
                               atol=1e-4)
