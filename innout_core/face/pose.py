"""Camera estimation from landmarks without Deep3DFaceRecon (docs/method.md §1.5–1.6).

A rigid mean 3D face (68 points, BFM units and frame) is fitted to the landmarks of the official 512 crop by PnP
with the crop's EG3D intrinsics; the pose is expressed as Deep3DFaceRecon's (angle, trans) and converted to the
25-number EG3D label by the official `3dface2idr_mat.py` + `preprocess_cameras.py --mode orig` rules.

Mean face: insightface's `data/objects/meanshape_68.pkl` (shipped with the installed `insightface` package; x right,
y down, z toward the viewer, arbitrary units), y flipped and mapped by the least-squares similarity (Umeyama) that
takes its 5-point reduction (§1.3) onto Deep3DFaceRecon's standard 5 landmarks `LM3D_STD` (BFM units, origin at
the BFM centroid), so the origin, axes and scale are those the official conversion constants assume.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import cv2
import numpy as np
import torch

from innout_core.eg3d.camera import FOCAL_FFHQ, intrinsics_matrix, make_label
from innout_core.errors import MissingWeightsError

from .align import LM3D_STD, OUTPUT_SIZE
from .landmarks import landmarks68_to_5

__all__ = [
    "BFM_CAMERA_DISTANCE",
    "OFFICIAL_SCALE",
    "OFFICIAL_OFFSET",
    "OFFICIAL_RADIUS",
    "HeadPose",
    "compute_rotation",
    "angles_from_rotation",
    "official_cam2world",
    "label_from_angle_trans",
    "mean_face_68",
    "estimate_head_pose",
    "estimate_labels",
    "yaw_pitch_from_label",
]

BFM_CAMERA_DISTANCE = 10.0  # Deep3DFaceRecon camera on +z at distance 10 (BFM units)
OFFICIAL_SCALE = 0.27  # 3dface2idr_mat.py: c <- 0.27 c
OFFICIAL_OFFSET = (0.0, 0.006, 0.161)  # 3dface2idr_mat.py: "offsets used in submission"
OFFICIAL_RADIUS = 2.7  # preprocess_cameras.py fix_pose_orig
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class HeadPose:
    """A head pose in Deep3DFaceRecon's convention: vertex X (row) posed as X @ compute_rotation(angle) + trans,
    camera at (0, 0, 10) looking down -z (OpenGL), BFM units.

    Attributes:
        angle: [3] float64 (alpha, beta, gamma) radians about x, y, z.
        trans: [3] float64 BFM units.
        rms_px: root-mean-square reprojection error of the fit in 512-crop pixels.
    """

    angle: np.ndarray
    trans: np.ndarray
    rms_px: float


def compute_rotation(angles: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon `compute_rotation`: (Rz(gamma) Ry(beta) Rx(alpha))^T.

    Args:
        angles: [..., 3] radians (alpha, beta, gamma).
    Returns:
        [..., 3, 3] float64 (used on row vectors: X @ R).
    """
    a = np.asarray(angles, dtype=np.float64)
    x, y, z = a[..., 0], a[..., 1], a[..., 2]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rx = np.stack([one, zero, zero, zero, np.cos(x), -np.sin(x), zero, np.sin(x), np.cos(x)], -1)
    ry = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], -1)
    rz = np.stack([np.cos(z), -np.sin(z), zero, np.sin(z), np.cos(z), zero, zero, zero, one], -1)
    shape = a.shape[:-1] + (3, 3)
    rot = rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)
    return np.swapaxes(rot, -1, -2)


def angles_from_rotation(rot: np.ndarray) -> np.ndarray:
    """Inverse of `compute_rotation` for beta in (-pi/2, pi/2): [3, 3] -> [3] radians (alpha, beta, gamma)."""
    m = np.asarray(rot, dtype=np.float64).T  # Rz Ry Rx
    beta = np.arctan2(-m[2, 0], np.hypot(m[0, 0], m[1, 0]))
    alpha = np.arctan2(m[2, 1], m[2, 2])
    gamma = np.arctan2(m[1, 0], m[0, 0])
    return np.array([alpha, beta, gamma])


def official_cam2world(angle: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """`3dface2idr_mat.py` + `fix_pose_orig`: Deep3DFaceRecon (angle [3], trans [3]) -> OpenCV cam2world [4, 4].

    R = compute_rotation(angle); t = trans, t_z -= 10; c = -R t; c = 0.27 c + (0, 0.006, 0.161);
    cam2world = [R diag(1, -1, -1) | c]; then c <- 2.7 c / |c|.
    """
    r = compute_rotation(angle)
    t = np.asarray(trans, dtype=np.float64).copy()
    t[2] -= BFM_CAMERA_DISTANCE
    c = -r @ t
    c = OFFICIAL_SCALE * c + np.asarray(OFFICIAL_OFFSET)
    c = OFFICIAL_RADIUS * c / np.linalg.norm(c)
    pose = np.eye(4)
    pose[:3, :3] = r @ _FLIP_YZ
    pose[:3, 3] = c
    return pose


def label_from_angle_trans(angle: np.ndarray, trans: np.ndarray, focal: float = FOCAL_FFHQ) -> torch.Tensor:
    """Official 25-number EG3D label(s) from Deep3DFaceRecon poses.

    Args:
        angle: [N, 3] or [3] radians; trans: same shape, BFM units.
        focal: normalised focal length (official 4.2647), principal point 0.5.
    Returns:
        [N, 25] float32: cam2world row-major (16) + normalised K row-major (9).
    """
    angle = np.atleast_2d(np.asarray(angle, dtype=np.float64))
    trans = np.atleast_2d(np.asarray(trans, dtype=np.float64))
    poses = np.stack([official_cam2world(a, t) for a, t in zip(angle, trans)]) if len(angle) else np.zeros((0, 4, 4))
    return make_label(torch.from_numpy(poses).float(), intrinsics_matrix(focal))


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ scale * R @ src + t (Umeyama 1991). src, dst: [N, 3]."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / a.var(0).sum())
    return scale, rot, mu_d - scale * rot @ mu_s


@lru_cache(maxsize=1)
def mean_face_68() -> np.ndarray:
    """[68, 3] float64 mean 3D face in BFM units and frame (x right, y up, z toward the camera, origin = BFM centroid),
    derived from insightface's `meanshape_68.pkl` (see the module docstring)."""
    spec = find_spec("insightface")
    path = Path(spec.origin).parent / "data" / "objects" / "meanshape_68.pkl" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise MissingWeightsError(
            "mean 3D face shape not found: install the `insightface` package (it ships data/objects/"
            "meanshape_68.pkl)", path)
    with open(path, "rb") as fh:
        shape = np.asarray(pickle.load(fh), dtype=np.float64)
    shape = shape * np.array([1.0, -1.0, 1.0])
    scale, rot, t = _umeyama(landmarks68_to_5(shape), LM3D_STD)
    return scale * shape @ rot.T + t


def _crop_camera(crop_size: int, focal: float) -> np.ndarray:
    """[3, 3] pixel K of the crop in pixel-index coords (EG3D rays go through pixel centres (i + 0.5) / R)."""
    f = focal * crop_size
    c = 0.5 * crop_size - 0.5
    return np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]])


def estimate_head_pose(landmarks: np.ndarray, crop_size: int = OUTPUT_SIZE, focal: float = FOCAL_FFHQ) -> HeadPose:
    """Fit the rigid mean face to landmarks of the official crop by PnP (SQPnP, refined by Levenberg-Marquardt).

    Args:
        landmarks: [68, 2] or [5, 2] in crop pixel-index coords (x right, y down).
        crop_size: crop side in pixels (the crop's normalised intrinsics are focal, 0.5).
        focal: normalised focal length.
    Returns:
        `HeadPose` (Deep3DFaceRecon angle/trans, BFM units).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape == (68, 2):
        model = mean_face_68()
    elif lm.shape == (5, 2):
        model = LM3D_STD
    else:
        raise ValueError(f"estimate_head_pose: expected [68, 2] or [5, 2] landmarks, got {lm.shape}")
    k = _crop_camera(crop_size, focal)
    ok, rvec, tvec = cv2.solvePnP(model, lm, k, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise ValueError("estimate_head_pose: PnP failed")
    rvec, tvec = cv2.solvePnPRefineLM(model, lm, k, None, rvec, tvec)
    proj = cv2.projectPoints(model, rvec, tvec, k, None)[0].reshape(-1, 2)
    rms = float(np.sqrt(((proj - lm) ** 2).sum(1).mean()))
    r_cv = cv2.Rodrigues(rvec)[0]
    # OpenCV camera X_cv = R_cv X + t_cv; OpenGL camera X_gl = D X_cv = R_bfm^T X + t', t' = trans - (0, 0, 10).
    r_bfm = r_cv.T @ _FLIP_YZ
    trans = _FLIP_YZ @ tvec.reshape(3) + np.array([0.0, 0.0, BFM_CAMERA_DISTANCE])
    return HeadPose(angles_from_rotation(r_bfm), trans, rms)


def estimate_labels(landmarks: np.ndarray, crop_size: int = OUTPUT_SIZE,
                    focal: float = FOCAL_FFHQ) -> tuple[torch.Tensor, list[HeadPose]]:
    """Per-frame EG3D labels from crop landmarks.

    Args:
        landmarks: [T, 68|5, 2] crop pixel-index coords.
    Returns:
        labels [T, 25] float32 (official conversion), and the T fitted `HeadPose`s.
    """
    poses = [estimate_head_pose(lm, crop_size, focal) for lm in np.asarray(landmarks, dtype=np.float64)]
    angle = np.stack([p.angle for p in poses]) if poses else np.zeros((0, 3))
    trans = np.stack([p.trans for p in poses]) if poses else np.zeros((0, 3))
    return label_from_angle_trans(angle, trans, focal), poses


def yaw_pitch_from_label(label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Yaw and pitch (radians, [N] float32) of the camera centres of labels [N, 25] in the LookAt parametrisation
    of `lookat_cam2world` (sphere around the world origin): pitch = -pi/2 * y / r, yaw = atan2(z, -x) - pi/2.

    Unlike `yaw_pitch_from_cam2world` it does not require the camera to look at the pivot (estimated cameras keep
    the fitted head rotation, as the official conversion does).
    """
    if label.dim() != 2 or label.shape[1] != 25:
        raise ValueError(f"yaw_pitch_from_label: expected [N, 25], got {list(label.shape)}")
    origin = label[:, [3, 7, 11]].double()
    r = origin.norm(dim=-1)
    pitch = -np.pi / 2 * (origin[:, 1] / r).clamp(-1, 1)
    yaw = torch.atan2(origin[:, 2], -origin[:, 0]) - np.pi / 2
    yaw = torch.remainder(yaw + np.pi, 2 * np.pi) - np.pi
    return yaw.float(), pitch.float()
