"""EG3D camera labels (docs/eg3d.md §12): the 25-number label, LookAt poses, normalised intrinsics, orbits.

Label layout: ``c[0:16]`` = OpenCV cam2world 4x4 row by row, ``c[16:25]`` = normalised K row by row
(``[fx, 0, cx, 0, fy, cy, 0, 0, 1]``, image side = 1). World: +y up, frontal camera on +z looking toward -z.
Yaw > 0 moves the camera toward +x; pitch > 0 moves it down (it looks up).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "CANONICAL_FRONTAL_LABEL",
    "FOCAL_FFHQ",
    "frontal_label",
    "intrinsics_matrix",
    "lookat_cam2world",
    "make_label",
    "orbit_labels",
    "split_label",
    "yaw_pitch_from_cam2world",
]

FOCAL_FFHQ = 4.2647
"""Normalised focal length of the FFHQ preprocessing (2985.29 / 700), fx = fy."""

CANONICAL_FRONTAL_LABEL = (1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1,
                           FOCAL_FFHQ, 0, 0.5, 0, FOCAL_FFHQ, 0.5, 0, 0, 1)
"""The frontal label as printed (yaw = pitch = 0, radius 2.7, pivot (0, 0, 0.2)): :func:`frontal_label` without the
~1e-16 rounding terms of the LookAt construction. The tiny generators' ``w_avg`` is mapped with this exact label."""

_V_EPS = 1e-5  # LookAtPoseSampler clamps the polar angle v to [1e-5, pi - 1e-5]


def _as_vector(x: Tensor | float, name: str) -> Tensor:
    t = x.to(torch.float64) if isinstance(x, Tensor) else torch.tensor(x, dtype=torch.float64)
    if t.dim() > 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a float or a 1-D tensor [N], got shape {list(t.shape)}")
    return t.reshape(-1)


def lookat_cam2world(yaw: Tensor | float, pitch: Tensor | float, radius: float = 2.7,
                     lookat: tuple[float, float, float] = (0.0, 0.0, 0.2)) -> Tensor:
    """OpenCV cam2world of the official ``LookAtPoseSampler.sample(pi/2 + yaw, pi/2 + pitch, lookat, radius)``.

    The camera sits on a sphere of ``radius`` around the world ORIGIN (not around ``lookat``) at polar angle
    ``arccos(1 - 2 v / pi)`` with ``v = clamp(pi/2 + pitch, 1e-5, pi - 1e-5)``, and looks at ``lookat``.

    Args:
        yaw, pitch: radians, floats or [N] tensors (broadcast against each other).
        radius: camera distance from the world origin, world units.
        lookat: the point the camera looks at, world units.
    Returns:
        [N, 4, 4] float32 cam2world (N = 1 for scalars). Computed in float64, rounded once.
    """
    yaw_t, pitch_t = torch.broadcast_tensors(_as_vector(yaw, "yaw"), _as_vector(pitch, "pitch"))
    theta = math.pi / 2 + yaw_t
    v = torch.clamp(math.pi / 2 + pitch_t, _V_EPS, math.pi - _V_EPS) / math.pi
    phi = torch.arccos(1 - 2 * v)
    origin = torch.stack((radius * torch.sin(phi) * torch.cos(math.pi - theta),
                          radius * torch.cos(phi),
                          radius * torch.sin(phi) * torch.sin(math.pi - theta)), dim=-1)  # [N, 3]
    target = torch.tensor(lookat, dtype=torch.float64, device=origin.device)
    forward = torch.nn.functional.normalize(target - origin, dim=-1)
    up_world = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64, device=origin.device).expand_as(forward)
    right = -torch.nn.functional.normalize(torch.linalg.cross(up_world, forward, dim=-1), dim=-1)
    up = torch.nn.functional.normalize(torch.linalg.cross(forward, right, dim=-1), dim=-1)
    top = torch.cat((torch.stack((right, up, forward), dim=-1), origin.unsqueeze(-1)), dim=-1)  # [N, 3, 4]
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=origin.device).expand(len(origin), 1, 4)
    return torch.cat((top, bottom), dim=1).float()  # built without in-place writes: yaw/pitch may carry grad


def intrinsics_matrix(focal: float = FOCAL_FFHQ, cx: float = 0.5, cy: float = 0.5) -> Tensor:
    """Normalised pinhole K ``[[f, 0, cx], [0, f, cy], [0, 0, 1]]`` (image side = 1), [3, 3] float32."""
    if not focal > 0:
        raise ValueError(f"intrinsics_matrix: focal must be > 0, got {focal}")
    return torch.tensor([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def frontal_label(G: torch.nn.Module | None = None, n: int = 1, focal: float = FOCAL_FFHQ, *, radius: float = 2.7,
                  lookat: tuple[float, float, float] = (0.0, 0.0, 0.2)) -> Tensor:
    """Label of the frontal camera (yaw = pitch = 0) for conditioning the mapping network (docs/method.md §2.2).

    Args:
        G: a generator; when given, its ``rendering.avg_camera_radius`` / ``avg_camera_pivot`` replace ``radius`` /
            ``lookat`` and the label is put on G's device.
        n: rows (the same label repeated).
        focal: normalised focal (FFHQ's 4.2647, §10.7; the release's inversion conditions with 4.4652).
        radius, lookat: the LookAt sphere radius and pivot (world units) when ``G`` is None.
    Returns:
        ``[n, 25]`` float32 (CPU when ``G`` is None).
    """
    if G is not None:
        r = G.rendering
        radius, lookat = r.avg_camera_radius, tuple(r.avg_camera_pivot)
    label = make_label(lookat_cam2world(0.0, 0.0, radius=radius, lookat=lookat), intrinsics_matrix(focal))
    if G is not None:
        label = label.to(next(G.parameters()).device)
    return label.repeat(n, 1)


def make_label(cam2world: Tensor, intrinsics: Tensor) -> Tensor:
    """The 25-number EG3D camera label.

    Args:
        cam2world: [N, 4, 4] (or [4, 4]) OpenCV cam2world.
        intrinsics: [N, 3, 3] or [3, 3] (shared) normalised K.
    Returns:
        [N, 25] float32: cam2world row by row, then K row by row.
    """
    if cam2world.dim() == 2:
        cam2world = cam2world.unsqueeze(0)
    if cam2world.dim() != 3 or cam2world.shape[1:] != (4, 4):
        raise ValueError(f"make_label: cam2world must be [N,4,4], got {list(cam2world.shape)}")
    n = cam2world.shape[0]
    if intrinsics.dim() == 2:
        intrinsics = intrinsics.unsqueeze(0).expand(n, 3, 3)
    if intrinsics.dim() != 3 or intrinsics.shape[1:] != (3, 3) or intrinsics.shape[0] != n:
        raise ValueError(f"make_label: intrinsics must be [3,3] or [{n},3,3], got {list(intrinsics.shape)}")
    return torch.cat((cam2world.reshape(n, 16), intrinsics.to(cam2world.device).reshape(n, 9)), 1).float()


def split_label(c: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of `make_label`: [N, 25] -> cam2world [N, 4, 4], K [N, 3, 3] (views of ``c``)."""
    if c.dim() != 2 or c.shape[1] != 25:
        raise ValueError(f"split_label: camera label must be [N,25], got {list(c.shape)}")
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3)


def yaw_pitch_from_cam2world(cam2world: Tensor, lookat: tuple[float, float, float] = (0.0, 0.0, 0.2), *,
                             max_angle: float | None = None) -> tuple[Tensor, Tensor]:
    """Yaw and pitch (radians, [N] float32) of cameras on the LookAt sphere: the inverse of `lookat_cam2world`.

    The LookAt sphere is centred at the world origin, so yaw and pitch follow from the camera centre (x, y, z)
    alone: ``cos(phi) = y / r`` and ``v = pi (1 - cos(phi)) / 2`` give ``pitch = v - pi/2 = -pi/2 * y / r``;
    ``yaw = atan2(z, -x) - pi/2`` wrapped to [-pi, pi). This is well defined for any camera centre (e.g. cameras
    estimated from landmarks). ``lookat`` sets only the orientation; with ``max_angle`` given, cameras whose
    forward axis misses ``lookat`` by more than ``max_angle`` radians are rejected.

    Args:
        cam2world: [N, 4, 4] (or [4, 4]) OpenCV cam2world.
        lookat: the point the cameras should look at, world units (used by the ``max_angle`` check).
        max_angle: optional tolerance in radians for the look-at check; None skips it.
    Raises:
        ValueError: on bad shapes, or (with ``max_angle``) a camera that does not look at ``lookat``.
    """
    if cam2world.dim() == 2:
        cam2world = cam2world.unsqueeze(0)
    if cam2world.dim() != 3 or cam2world.shape[1:] != (4, 4):
        raise ValueError(f"yaw_pitch_from_cam2world: cam2world must be [N,4,4], got {list(cam2world.shape)}")
    m = cam2world.double()
    origin = m[:, :3, 3]
    if max_angle is not None:
        target = torch.tensor(lookat, dtype=torch.float64, device=m.device)
        to_target = torch.nn.functional.normalize(target - origin, dim=-1)
        cos_err = (torch.nn.functional.normalize(m[:, :3, 2], dim=-1) * to_target).sum(-1).clamp(-1, 1)
        worst = float(torch.arccos(cos_err).max())
        if worst > max_angle:
            raise ValueError(f"yaw_pitch_from_cam2world: camera does not look at {lookat} "
                             f"(off by {math.degrees(worst):.3f} deg > {math.degrees(max_angle):.3f} deg)")
    r = origin.norm(dim=-1)
    cos_phi = (origin[:, 1] / r).clamp(-1, 1)
    pitch = -math.pi / 2 * cos_phi  # v = pi (1 - cos phi) / 2, pitch = v - pi/2
    yaw = torch.atan2(origin[:, 2], -origin[:, 0]) - math.pi / 2
    yaw = torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi
    return yaw.float(), pitch.float()


def orbit_labels(n: int, yaw_range: float, pitch_range: float, radius: float = 2.7, focal: float = FOCAL_FFHQ,
                 *, lookat: tuple[float, float, float] = (0.0, 0.0, 0.2), pitch_offset: float = 0.0) -> Tensor:
    """A closed elliptical camera orbit (the official ``gen_videos`` path, exact pi, no -0.05 pitch offset unless
    ``pitch_offset`` is given): frame t has ``yaw = yaw_range * sin(2 pi t / n)`` and
    ``pitch = pitch_offset + pitch_range * cos(2 pi t / n)``.

    Args:
        n: number of frames (>= 1).
        yaw_range, pitch_range: amplitudes, radians.
        radius, focal, lookat: camera distance, normalised focal, LookAt point.
        pitch_offset: constant added to every pitch, radians.
    Returns:
        [n, 25] float32 labels.
    """
    if n < 1:
        raise ValueError(f"orbit_labels: n must be >= 1, got {n}")
    t = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    cam2world = lookat_cam2world(yaw_range * torch.sin(t), pitch_offset + pitch_range * torch.cos(t),
                                 radius=radius, lookat=lookat)
    return make_label(cam2world, intrinsics_matrix(focal))
