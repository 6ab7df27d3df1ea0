"""The procedural head family: seeded identities, EG3D framing, mirror symmetry, part-local parameters, density."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from innout_core.eg3d.camera import intrinsics_matrix, lookat_cam2world, make_label
from innout_core.eg3d.configs import _frontal_label
from innout_core.synthetic.heads import (
    PART_NAMES,
    HeadParams,
    frontal_camera,
    head_bounds,
    head_cameras,
    head_field,
    mirror_symmetric,
    render_head,
    sample_identities,
)

R = 48  # small renders keep the module fast on a shared CPU
SAMPLES = {"n_coarse": 12, "n_fine": 12}


def _cam(yaw: float, pitch: float = 0.0) -> torch.Tensor:
    return make_label(lookat_cam2world(yaw, pitch), intrinsics_matrix())


@pytest.fixture(scope="module")
def ident() -> HeadParams:
    return sample_identities(2, seed=3)[1]


@pytest.fixture(scope="module")
def frontal(ident: HeadParams):
    return render_head(mirror_symmetric(ident), frontal_camera(), R, **SAMPLES)


def test_identities_are_seeded_and_prefix_stable() -> None:
    a, b = sample_identities(4, seed=11), sample_identities(4, seed=11)
    assert a == b
    assert sample_identities(2, seed=11) == a[:2]  # identity k does not depend on how many are drawn
    assert sample_identities(4, seed=12) != a
    assert len({p.to_tensor().sum().item() for p in a}) == 4  # four different identities
    assert a[0].to_tensor().numel() >= 30  # "a few dozen parameters"


def test_render_is_deterministic(ident: HeadParams) -> None:
    cams = head_cameras(2, torch.Generator().manual_seed(0))
    r1 = render_head(ident, cams, 24, **SAMPLES)
    assert torch.equal(r1.image, render_head(ident, cams, 24, **SAMPLES).image)
    r2 = render_head(ident, cams, 24, **SAMPLES, chunk_rays=100)  # chunking changes only float rounding
    assert torch.allclose(r1.image, r2.image, atol=1e-5) and torch.allclose(r1.alpha, r2.alpha, atol=1e-5)
    # jittered samples from a seeded generator are reproducible too, and differ from the deterministic ones
    j1 = render_head(ident, cams, 24, **SAMPLES, generator=torch.Generator().manual_seed(5))
    j2 = render_head(ident, cams, 24, **SAMPLES, generator=torch.Generator().manual_seed(5))
    assert torch.equal(j1.image, j2.image) and not torch.equal(j1.image, r1.image)


def test_cameras_are_eg3d_ffhq_framing() -> None:
    # the same canonical label as the generators' frontal camera (radius 2.7, pivot (0,0,0.2), focal 4.2647)
    assert torch.allclose(frontal_camera(), _frontal_label(), atol=1e-5)
    cams = head_cameras(64, torch.Generator().manual_seed(0))
    pos = cams[:, :16].reshape(-1, 4, 4)[:, :3, 3]
    assert torch.allclose(pos.norm(dim=-1), torch.full((64,), 2.7), atol=1e-4)
    yaw = torch.atan2(pos[:, 0], pos[:, 2])
    assert yaw.abs().max() <= torch.deg2rad(torch.tensor(25.5)) and yaw.abs().max() > torch.deg2rad(torch.tensor(15.0))


def test_face_is_in_frame_and_centred_at_the_frontal_camera(frontal) -> None:
    alpha = frontal.alpha[0, 0]
    parts = frontal.parts[0]
    rows = torch.arange(R, dtype=torch.float32)
    cols = torch.arange(R, dtype=torch.float32)
    # opacity centroid on the vertical axis (symmetric identity)
    cx = (alpha.sum(0) * cols).sum() / alpha.sum()
    assert abs(float(cx) - (R - 1) / 2) < 0.05
    # eyes: iris/pupil pixels on both sides, at FFHQ-like height (just above the image centre)
    eyes = parts[PART_NAMES.index("iris")] + parts[PART_NAMES.index("pupil")]
    assert float(eyes[:, : R // 2].sum()) > 0.3 and float(eyes[:, R // 2:].sum()) > 0.3
    eye_row = float((eyes.sum(1) * rows).sum() / eyes.sum()) / R
    lips = parts[PART_NAMES.index("lips")]
    lip_row = float((lips.sum(1) * rows).sum() / lips.sum()) / R
    assert 0.35 < eye_row < 0.55, eye_row
    assert eye_row + 0.15 < lip_row < 0.85, lip_row
    # the head fits the frame: background above the hair and at the left/right borders at eye height
    er = int(eye_row * R)
    assert float(alpha[0].max()) < 0.05
    assert float(alpha[er, 0]) < 0.05 and float(alpha[er, -1]) < 0.05
    assert float(alpha[er, R // 2]) > 0.99  # opaque face in the middle
    # the composited part weights account for all the opacity
    assert torch.allclose(parts.sum(0), alpha, atol=2e-3)


def test_yaw_mirror_symmetry(ident: HeadParams) -> None:
    sym = mirror_symmetric(ident)
    left = render_head(sym, _cam(-0.3, 0.1), R, **SAMPLES).image
    right = render_head(sym, _cam(0.3, 0.1), R, **SAMPLES).image
    err = (left - right.flip(-1)).abs()
    assert float(err.mean()) < 2e-3 and float((err > 0.05).float().mean()) < 0.01  # rounding at silhouettes
    # control: the asymmetric fringe breaks it
    asym = replace(sym, hair_side=0.3)
    left = render_head(asym, _cam(-0.3, 0.1), R, **SAMPLES).image
    right = render_head(asym, _cam(0.3, 0.1), R, **SAMPLES).image
    assert float((left - right.flip(-1)).abs().mean()) > 10 * float(err.mean())


def test_hair_colour_changes_only_hair_pixels(ident: HeadParams, frontal) -> None:
    sym = mirror_symmetric(ident)
    new = (0.9, 0.1, 0.1)
    red = render_head(replace(sym, hair_color=new), frontal_camera(), R, **SAMPLES)
    change = (red.image - frontal.image).abs().amax(1)[0]  # [R, R]
    hair = frontal.parts[0, PART_NAMES.index("hair")]
    dc = max(abs(a - b) for a, b in zip(new, sym.hair_color))
    # image = 2 * composite - 1 and colour = sum_part weight * colour * shade (shade <= 1): bounded by hair weight
    assert bool((change <= 2 * dc * hair + 1e-4).all())
    assert int((change > 0.1).sum()) > 0.05 * R * R  # and the hair does change
    assert float(change[hair < 1e-4].max()) < 1e-3
    # the converse: skin colour changes pixels that are not hair
    tan = render_head(replace(sym, skin_color=(0.4, 0.3, 0.2)), frontal_camera(), R, **SAMPLES)
    skin_change = (tan.image - frontal.image).abs().amax(1)[0]
    assert float(skin_change[(hair < 1e-3) & (frontal.alpha[0, 0] > 0.9)].mean()) > 0.1


def test_expression_parameters_change_the_face(ident: HeadParams, frontal) -> None:
    sym = mirror_symmetric(ident)
    smile = render_head(replace(sym, smile=1.0, mouth_open=0.8), frontal_camera(), R, **SAMPLES)
    closed = render_head(replace(sym, eye_openness=0.2), frontal_camera(), R, **SAMPLES)
    lips_row = frontal.parts[0, PART_NAMES.index("lips")].sum(1).argmax()
    d_smile = (smile.image - frontal.image).abs().sum(1)[0]
    assert float(d_smile.sum()) > 1.0 and int(d_smile.sum(1).argmax() - lips_row) in range(-4, 5)
    eyes_closed = closed.parts[0, PART_NAMES.index("iris")].sum()
    assert float(eyes_closed) < 0.7 * float(frontal.parts[0, PART_NAMES.index("iris")].sum())


def test_density_is_finite_non_negative_and_localised(ident: HeadParams) -> None:
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.rand(20000, 3, generator=g) * 1.6 - 0.8,  # the box and beyond
                     torch.tensor([[0.0, ident.head_y, -0.02], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])])
    f = head_field(pts, ident)
    dens = f.density
    assert bool(torch.isfinite(dens).all()) and bool((dens >= 0).all())
    assert float(dens[-3]) > 100 and float(dens[-2]) > 100  # inside the skull: opaque within ~1 cm
    assert float(dens[-1]) < 1e-3  # far away: empty
    (x0, x1), (y0, y1), (z0, z1) = head_bounds(ident)
    outside = (pts[:, 0] < x0) | (pts[:, 0] > x1) | (pts[:, 1] < y0) | (pts[:, 1] > y1) | (pts[:, 2] < z0) | (
        pts[:, 2] > z1)
    assert float(dens[outside].max()) < 1e-3
    assert bool(((f.rgb >= 0) & (f.rgb <= 1)).all())
    inside = ~outside
    assert torch.allclose(f.parts[inside].sum(-1), torch.ones(int(inside.sum())), atol=1e-5)
    # the bounding box is only a shortcut: the dense field agrees with it at the box's faces
    from innout_core.synthetic.heads import _head_field_dense

    face_pts = torch.stack([torch.full((50,), x1), torch.linspace(y0, y1, 50), torch.linspace(z0, z1, 50)], -1)
    assert float(torch.nn.functional.softplus(_head_field_dense(face_pts, ident).sigma - 1).max()) < 1e-3


def test_bad_input_is_rejected(ident: HeadParams) -> None:
    with pytest.raises(ValueError, match=r"points must be \[P, 3\]"):
        head_field(torch.zeros(4, 2), ident)
    with pytest.raises(ValueError, match=r"cameras must be \[N, 25\]"):
        render_head(ident, torch.zeros(2, 16), 8)
    with pytest.raises(ValueError, match="n must be >= 0"):
        sample_identities(-1, 0)
