"""Camera labels: official LookAt poses (case a's `mapping/c`), label layout, yaw/pitch inverse, orbits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from innout_core.eg3d import camera as cam


@pytest.fixture(scope="module")
def cases(reference_dir) -> dict[str, torch.Tensor]:
    data = np.load(reference_dir / "small-cases.npz")
    return {k: torch.from_numpy(data[k]) for k in ("mapping/c", "mapping/cam_yaw_pitch")}


def test_lookat_label_reproduces_case_a(cases):
    yp = cases["mapping/cam_yaw_pitch"]
    c = cam.make_label(cam.lookat_cam2world(yp[:, 0], yp[:, 1]), cam.intrinsics_matrix())
    assert c.shape == (4, 25) and c.dtype == torch.float32
    assert (c - cases["mapping/c"]).abs().max().item() <= 1e-6


def test_canonical_frontal_label():
    c = cam.make_label(cam.lookat_cam2world(0.0, 0.0), cam.intrinsics_matrix())
    expect = torch.tensor([1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1,
                           4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1], dtype=torch.float32)
    assert torch.allclose(c[0], expect, atol=2e-7)  # docs/eg3d.md §12 (to float32 rounding of the tilt to the pivot)


def test_frontal_label_one_function_for_every_caller():
    """frontal_label: the printed canonical label; a generator's avg radius / pivot and device; focal; n rows."""
    c = cam.frontal_label()
    assert c.shape == (1, 25) and c.dtype == torch.float32
    assert torch.allclose(c[0], torch.tensor(cam.CANONICAL_FRONTAL_LABEL, dtype=torch.float32), atol=2e-7)

    class _Rendering:
        avg_camera_radius, avg_camera_pivot = 3.1, [0.0, 0.05, 0.1]

    G = torch.nn.Linear(1, 1)  # any module with parameters and a ``rendering``
    G.rendering = _Rendering()
    c = cam.frontal_label(G, 3, focal=4.4652)
    assert c.shape == (3, 25) and torch.equal(c[0], c[2]) and c.device == G.weight.device
    assert float(c[0, 16]) == pytest.approx(4.4652) and float(c[0, 20]) == pytest.approx(4.4652)
    assert torch.equal(c[:1], cam.frontal_label(radius=3.1, lookat=(0.0, 0.05, 0.1), focal=4.4652))
    assert float(torch.linalg.vector_norm(c[0, [3, 7, 11]])) == pytest.approx(3.1, rel=1e-6)  # on the sphere
    from innout_core import inversion
    assert inversion.frontal_label is cam.frontal_label  # the old import path still works


def test_cam2world_is_opencv_rotation_looking_at_pivot():
    yaw = torch.tensor([0.3, -0.7, 1.0])
    pitch = torch.tensor([-0.2, 0.4, 0.0])
    m = cam.lookat_cam2world(yaw, pitch, radius=2.7).double()
    rot = m[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(m[:, :3, 3].norm(dim=-1), torch.full((3,), 2.7, dtype=torch.float64), atol=1e-6)
    to_pivot = torch.nn.functional.normalize(torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64) - m[:, :3, 3], dim=-1)
    assert torch.allclose(rot[:, :, 2], to_pivot, atol=1e-6)
    assert (m[:, 0, 3][yaw > 0] > 0).all()  # positive yaw moves the camera toward +x
    assert m[0, 1, 3] > 0 and m[1, 1, 3] < 0  # negative pitch = camera above (world +y up)
    assert (rot[:, 1, 1] < 0).all()  # camera y (down) points to world -y


def test_label_round_trip():
    c2w = cam.lookat_cam2world(torch.tensor([0.1, 0.2]), torch.tensor([-0.1, 0.3]))
    k = torch.tensor([[[4.0, 0.05, 0.47], [0, 4.4, 0.53], [0, 0, 1]], [[3.0, 0, 0.5], [0, 3.0, 0.5], [0, 0, 1]]])
    c = cam.make_label(c2w, k)
    c2w_b, k_b = cam.split_label(c)
    assert torch.equal(c2w_b, c2w) and torch.equal(k_b, k)
    assert torch.equal(cam.make_label(c2w_b, k_b), c)
    assert c[0, 16].item() == 4.0 and c[0, 17].item() == pytest.approx(0.05) and c[0, 18].item() == pytest.approx(0.47)


def test_yaw_pitch_inverts_lookat_within_60_degrees():
    g = torch.Generator().manual_seed(0)
    yaw = (torch.rand(200, generator=g, dtype=torch.float64) * 2 - 1) * math.radians(60)
    pitch = (torch.rand(200, generator=g, dtype=torch.float64) * 2 - 1) * math.radians(60)
    y, p = cam.yaw_pitch_from_cam2world(cam.lookat_cam2world(yaw, pitch))
    assert (y.double() - yaw).abs().max().item() < 2e-6
    assert (p.double() - pitch).abs().max().item() < 2e-6


def test_yaw_pitch_lookat_check_is_opt_in():
    m = cam.lookat_cam2world(0.2, 0.1)
    m[:, :3, 3] += torch.tensor([0.3, 0.0, 0.0])
    y, p = cam.yaw_pitch_from_cam2world(m)  # no check by default: angles of the camera centre
    assert torch.isfinite(y).all() and torch.isfinite(p).all()
    cam.yaw_pitch_from_cam2world(cam.lookat_cam2world(0.2, 0.1), max_angle=1e-4)
    with pytest.raises(ValueError, match="does not look at"):
        cam.yaw_pitch_from_cam2world(m, max_angle=1e-3)


def test_orbit_labels_closed_path():
    c = cam.orbit_labels(8, 0.35, 0.25)
    assert c.shape == (8, 25)
    y, p = cam.yaw_pitch_from_cam2world(cam.split_label(c)[0])
    t = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    assert torch.allclose(y.double(), 0.35 * torch.sin(t), atol=2e-6)
    assert torch.allclose(p.double(), 0.25 * torch.cos(t), atol=2e-6)
    assert torch.equal(c[:, 16:], cam.intrinsics_matrix().reshape(1, 9).expand(8, 9))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\[N,25\]"):
        cam.split_label(torch.zeros(2, 24))
    with pytest.raises(ValueError, match="intrinsics"):
        cam.make_label(torch.zeros(2, 4, 4), torch.zeros(3, 3, 3))


def test_lookat_is_differentiable_in_yaw_pitch(device):
    yaw = torch.tensor([0.3], device=device, requires_grad=True)
    pitch = torch.tensor([-0.1], device=device, requires_grad=True)
    m = cam.lookat_cam2world(yaw, pitch)
    assert m.device.type == device.type
    m[:, 0, 3].sum().backward()  # x = r sin(phi) sin(yaw): d/dyaw > 0 near yaw 0.3
    assert yaw.grad is not None and yaw.grad.item() > 0
