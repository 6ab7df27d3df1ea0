"""Composite volume rendering: fast form vs a slow per-ray loop reference, limits b=0 / b=1, renderer wiring."""

from __future__ import annotations

import math

import pytest
import torch

from innout_core.composite import composite_march, render_composite
from innout_core.eg3d.rendering import ray_march
from innout_core.errors import BadInputError
from innout_core.ood import OODField


def _softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def _loop_reference(fc, fs, oc, os_, b, z, form):
    """Obviously-correct per-ray, per-interval loop (python floats for scalars, fp64)."""
    n, m, s, c = fc.shape
    rgb = torch.zeros(n, m, c, dtype=torch.float64)
    wts = torch.zeros(n, m, s - 1, dtype=torch.float64)
    for i in range(n):
        for r in range(m):
            T = 1.0
            for k in range(s - 1):
                delta = float(z[i, r, k + 1, 0] - z[i, r, k, 0])
                si = _softplus(float(fs[i, r, k, 0] + fs[i, r, k + 1, 0]) / 2 - 1)
                so = _softplus(float(os_[i, r, k, 0] + os_[i, r, k + 1, 0]) / 2 - 1)
                bk = float(b[i, r, k, 0] + b[i, r, k + 1, 0]) / 2
                ai = 1 - math.exp(-si * delta)
                ao = 1 - math.exp(-so * delta)
                ci = (fc[i, r, k].double() + fc[i, r, k + 1].double()) / 2
                co = (oc[i, r, k].double() + oc[i, r, k + 1].double()) / 2
                rgb[i, r] += T * (bk * ao * co + (1 - bk) * ai * ci)
                wts[i, r, k] = T * (bk * ao + (1 - bk) * ai)
                if form == "official":
                    T *= (1 - bk * ao + 1e-10) * (1 - (1 - bk) * ai + 1e-10)
                else:
                    T *= math.exp(-(si + so) * delta)
    return rgb * 2 - 1, wts


def _random_inputs(n=2, m=5, s=9, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.sort(2.25 + torch.rand(n, m, s, 1, generator=g) * 1.05, dim=2).values
    fc = torch.rand(n, m, s, c, generator=g)
    oc = torch.rand(n, m, s, c, generator=g)
    fs = torch.randn(n, m, s, 1, generator=g) * 8
    os_ = torch.randn(n, m, s, 1, generator=g) * 8
    b = torch.rand(n, m, s, 1, generator=g)
    return fc, fs, oc, os_, b, z


@pytest.mark.parametrize("form", ["official", "paper"])
def test_fast_matches_loop_reference(form, device) -> None:
    fc, fs, oc, os_, b, z = _random_inputs()
    out = composite_march(*(t.to(device) for t in (fc, fs, oc, os_, b, z)), form=form)
    ref_rgb, ref_w = _loop_reference(fc, fs, oc, os_, b, z, form)
    tol = 1e-5  # fp32 vs fp64 loop: a few ulps of values <= 1 accumulated over 8 intervals
    torch.testing.assert_close(out.rgb.cpu().double(), ref_rgb, atol=tol, rtol=0)
    torch.testing.assert_close(out.weights.squeeze(-1).cpu().double(), ref_w, atol=tol, rtol=0)
    zmid = (z[:, :, 1:] + z[:, :, :-1]) / 2
    ref_depth = (ref_w.unsqueeze(-1) * zmid.double()).sum(2) / ref_w.sum(2, keepdim=True)
    torch.testing.assert_close(out.depth.cpu().double(), ref_depth, atol=1e-5, rtol=0)
    assert (out.acc <= 1 + 1e-6).all()


def test_b0_is_face_march_and_b1_is_ood_march() -> None:
    fc, fs, oc, os_, b, z = _random_inputs(seed=1)
    face = ray_march(fc, fs, z)
    ood = ray_march(oc, os_, z)
    c0 = composite_march(fc, fs, oc, os_, torch.zeros_like(b), z)
    c1 = composite_march(fc, fs, oc, os_, torch.ones_like(b), z)
    for comp, ref in ((c0, face), (c1, ood)):
        torch.testing.assert_close(comp.rgb, ref[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(comp.depth, ref[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(comp.weights, ref[2], atol=1e-7, rtol=0)
    assert torch.count_nonzero(c0.ood_weights) == 0


def test_paper_form_with_empty_other_field() -> None:
    fc, fs, oc, os_, b, z = _random_inputs(seed=2)
    empty = torch.full_like(os_, -200.0)  # softplus(-201) = 0: the other field does not attenuate
    c0 = composite_march(fc, fs, oc, empty, torch.zeros_like(b), z, form="paper")
    face = ray_march(fc, fs, z)
    torch.testing.assert_close(c0.rgb, face[0], atol=1e-5, rtol=0)
    # Eq. 4 itself with a dense OOD field and b = 0: sigma_O still attenuates, so b = 0 alone is no removal there
    dense = torch.full_like(os_, 50.0)
    cp = composite_march(fc, fs, oc, dense, torch.zeros_like(b), z, form="paper")
    co = composite_march(fc, fs, oc, dense, torch.zeros_like(b), z, form="official")
    assert cp.acc.sum() < 0.5 * co.acc.sum()
    # removal (ood_keep = 0: b = 0 and sigma_O out of the transmittance) is the face field alone in both forms
    gone = torch.zeros(*b.shape[:2], 1, 1)
    for form in ("paper", "official"):
        cr = composite_march(fc, fs, oc, dense, b, z, form=form, ood_keep=gone)
        torch.testing.assert_close(cr.rgb, face[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(cr.weights, face[2], atol=1e-6, rtol=0)
        assert torch.count_nonzero(cr.ood_weights) == 0


def _opaque_occluder_scene():
    """Tiny G, one view, and an OOD field that is an opaque wall (huge density, b = 1) filling the render box."""
    from innout_core.eg3d.camera import orbit_labels
    from innout_core.eg3d.configs import build_generator

    G = build_generator("tiny")
    c = orbit_labels(1, 0.2, 0.1)
    z = torch.randn(1, G.init_kwargs["z_dim"], generator=torch.Generator().manual_seed(0))
    ood = OODField(1, 32, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        planes = G.backbone_planes(G.mapping(z, c), noise_mode="const")
        last = ood.decoder.net[2]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = 60.0  # sigma: opaque within one sample interval
        last.bias[1:4] = torch.tensor([3.0, -3.0, 0.0])  # a saturated colour unlike the face
        last.bias[-1] = 30.0  # b = sigmoid(30) = 1
    return G, planes, c, ood


@pytest.mark.parametrize("form", ["official", "paper"])
def test_removal_of_an_opaque_occluder_is_the_face_render(form) -> None:
    G, planes, c, ood = _opaque_occluder_scene()
    idx = torch.tensor([0])
    R = 8
    with torch.no_grad():
        face = G.render(planes, c, resolution=R, generator=torch.Generator().manual_seed(4))
        full = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=R, form=form)
        assert full.ood_share.min() > 0.95  # the occluder hides the face everywhere
        assert (full.rgb[..., :3] - face.rgb[..., :3]).abs().max() > 0.5
        removed = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=R, form=form,
                                   blend_mode="zero")
        torch.testing.assert_close(removed.rgb, face.rgb, atol=1e-5, rtol=0)
        torch.testing.assert_close(removed.depth, face.depth, atol=1e-5, rtol=0)
        # a removal mask on the left half: those rays are the face, the others the unchanged composite
        mask = torch.zeros(1, 1, R, R)
        mask[..., : R // 2] = 1
        part = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=R, form=form,
                                removal_mask=mask)
        left = mask.reshape(1, R * R).bool()[0]
        torch.testing.assert_close(part.rgb[:, left], face.rgb[:, left], atol=1e-5, rtol=0)
        torch.testing.assert_close(part.rgb[:, ~left], full.rgb[:, ~left], atol=1e-6, rtol=0)
        slow = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=R, form=form,
                                removal_mask=mask, fused=False)
        torch.testing.assert_close(slow.rgb, part.rgb, atol=1e-5, rtol=0)


def test_bad_inputs() -> None:
    fc, fs, oc, os_, b, z = _random_inputs()
    with pytest.raises(BadInputError):
        composite_march(fc, fs, oc, os_, b, z, form="sum")
    with pytest.raises(BadInputError):
        composite_march(fc, fs, oc[:, :, :-1], os_, b, z)


def test_render_composite_wiring_and_release_order() -> None:
    from innout_core.eg3d.camera import orbit_labels
    from innout_core.eg3d.configs import build_generator

    G = build_generator("tiny")
    c = orbit_labels(1, 0.2, 0.1)
    z = torch.randn(1, G.init_kwargs["z_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        planes = G.backbone_planes(G.mapping(z, c), noise_mode="const")
        ood = OODField(1, 32, 16, generator=torch.Generator().manual_seed(2))
        idx = torch.tensor([0])
        face = G.render(planes, c, resolution=8, generator=torch.Generator().manual_seed(4))
        r0 = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=8,
                              blend_mode="zero", with_face_only=True)
        torch.testing.assert_close(r0.rgb, face.rgb, atol=1e-6, rtol=0)  # b = 0: the plain EG3D face render
        torch.testing.assert_close(r0.face_rgb, face.rgb, atol=1e-6, rtol=0)  # same maths, other summation order
        r1 = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=8, blend_mode="one")
        torch.testing.assert_close(r1.rgb, r1.ood_rgb, atol=1e-6, rtol=0)  # b = 1: the OOD field alone
        s = face.samples
        pts = s.points().reshape(1, -1, 3)
        cols = ood.query(pts, idx)[0].reshape(*s.depths.shape[:3], -1)
        torch.testing.assert_close(r1.ood_rgb, ray_march(cols, ood.query(pts, idx)[1].reshape(s.depths.shape),
                                                         s.depths)[0], atol=1e-6, rtol=0)
        # release order: same per-ray multiset of blend values, different order, extra RNG draw
        rl = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=8,
                              release_sample_order=True)
        rn = render_composite(G, planes, c, ood, idx, torch.Generator().manual_seed(4), resolution=8)
        torch.testing.assert_close(rl.blend.sort(dim=2).values, rn.blend.sort(dim=2).values, atol=0, rtol=0)
        assert not torch.equal(rl.blend, rn.blend)
        assert rl.is_coarse.sum() == rn.is_coarse.sum() == 8 * 8 * s.n_coarse
        with pytest.raises(BadInputError):
            render_composite(G, planes, c, ood, idx, None, resolution=8, removal_mask=torch.ones(1, 1, 4, 4))
