"""A worker caches one generator and shares it between tasks: rendering, edits and smoothing must leave it as it
was (weights, rendering settings, hooks, attributes), and give the numbers the old copy-and-mutate code gave."""

from __future__ import annotations

import copy

import pytest
import torch

from innout_core.edit import EditConfig, SmoothConfig, run_edits, smooth_sr_block0
from innout_core.composite import render_composite_video, sr_module
from tests.innout_core.tiny_video import known_face_stage_a


@pytest.fixture(scope="module")
def tiny_G():
    from innout_core.eg3d.configs import build_generator

    return build_generator("tiny").requires_grad_(False)


@pytest.fixture(scope="module")
def stage_a(tiny_G):
    """A 1-step stage-A result on 2 frames of a known face (neural resolution 16) and its cameras."""
    return known_face_stage_a(tiny_G, steps=1)


@pytest.fixture(scope="module")
def sr_state(tiny_G):
    """A 'fine-tuned' SR state: G's own, every tensor nudged (so using it or not shows in the image)."""
    g = torch.Generator().manual_seed(3)
    return {k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in tiny_G.superresolution.state_dict().items()}


def _snapshot(G) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in G.state_dict().items()},
        "rendering": G.rendering,
        "rendering_fields": copy.deepcopy(G.rendering),
        "attributes": sorted(vars(G)),
        "nrr": G.neural_rendering_resolution,
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in G.modules()),
        "grad": [p.requires_grad for p in G.parameters()],
        "training": [m.training for m in G.modules()],
    }


def _assert_unchanged(G, before: dict) -> None:
    after = _snapshot(G)
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k
    assert after["rendering"] is before["rendering"] and after["rendering"] == before["rendering_fields"]
    for key in ("attributes", "nrr", "hooks", "grad", "training"):
        assert after[key] == before[key], key


def test_render_composite_video_leaves_G_unchanged_and_matches_a_copy_with_the_sr_state(tiny_G, stage_a, sr_state):
    G = tiny_G
    sa, c = stage_a
    before = _snapshot(G)
    out = render_composite_video(G, sa, c, torch.Generator().manual_seed(5), sr_state=sr_state, sample_mult=2)
    _assert_unchanged(G, before)
    # the reference: what the old code did, a deep copy of G with the SR state loaded and more samples set on it
    G2 = copy.deepcopy(G)
    G2.superresolution.load_state_dict(sr_state)
    G2.rendering = G.rendering.with_sample_mult(2)
    ref = render_composite_video(G2, sa, c, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out.image, ref.image, rtol=0, atol=0)
    own = render_composite_video(G, sa, c, torch.Generator().manual_seed(5), sample_mult=2)
    assert (own.image - out.image).abs().max() > 1e-3  # the SR state is used
    loaded = render_composite_video(G, sa, c, torch.Generator().manual_seed(5), sample_mult=2,
                                    superresolution=sr_module(G, sr_state))
    torch.testing.assert_close(loaded.image, out.image, rtol=0, atol=0)
    _assert_unchanged(G, before)


def test_run_edits_with_smoothing_sr_state_and_more_samples_leaves_G_unchanged(tiny_G, stage_a, sr_state):
    G = tiny_G
    sa, c = stage_a
    cfg = EditConfig(remove_ood=True, smooth=SmoothConfig(sr=0.7),
                     novel_view={"enabled": True, "frame": 1, "n_frames": 3, "yaw_range": 0.3, "sample_mult": 2})
    before = _snapshot(G)
    out = run_edits(G, sa, c, cfg, torch.Generator().manual_seed(7), sr_state=sr_state)
    _assert_unchanged(G, before)
    # the old code's numbers: hooks on (a copy of) G, SR state loaded, G's rendering swapped for the orbit
    G2 = copy.deepcopy(G)
    G2.superresolution.load_state_dict(sr_state)
    with torch.no_grad(), smooth_sr_block0(G2, 0.7):
        removed = render_composite_video(G2, sa, c, torch.Generator().manual_seed(7), remove_ood=True)
    torch.testing.assert_close(out["remove_ood"], removed.image.clamp(-1, 1), rtol=0, atol=0)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in G2.modules())  # the context removed them
    # the orbit: 3 frames (the smoothing kernel's length), twice the samples per ray, set on the copy as before
    from innout_core.eg3d.camera import orbit_labels

    nv = cfg.novel_view
    cams = orbit_labels(nv.n_frames, nv.yaw_range, nv.pitch_range, pitch_offset=nv.pitch_offset)
    idx = torch.full((nv.n_frames,), nv.frame, dtype=torch.long)
    G2.rendering = G.rendering.with_sample_mult(2)
    renders = {}
    for factor in (0.7, 0.0):
        with torch.no_grad(), smooth_sr_block0(G2, factor):
            renders[factor] = render_composite_video(G2, sa, cams, torch.Generator().manual_seed(7),
                                                     ws_override=sa.ws[idx], frame_index=idx).image.clamp(-1, 1)
    torch.testing.assert_close(out["novel_view"], renders[0.7], rtol=0, atol=0)
    assert (renders[0.0][2] - renders[0.7][2]).abs().max() > 1e-4  # the third frame is smoothed
    torch.testing.assert_close(renders[0.0][:2], renders[0.7][:2], rtol=0, atol=1e-6)  # the first two are not


def test_sample_mult_is_per_call(tiny_G) -> None:
    r = tiny_G.rendering
    more = r.with_sample_mult(3)
    assert (more.depth_resolution, more.depth_resolution_importance) == (3 * r.depth_resolution,
                                                                         3 * r.depth_resolution_importance)
    assert r.with_sample_mult(1) is r and tiny_G.rendering is r
    with pytest.raises(ValueError, match="sample_mult"):
        r.with_sample_mult(0)
