"""Automatic OOD masks: residual evidence, spatio-temporal hysteresis, clean-up, masks from an OOD-share map, the
stage-A entry point (reference latents, face-parsing intersection, config validation)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from innout_core.auto_masks import (
    AutoMaskConfig,
    ResidualMaskConfig,
    ShareMaskConfig,
    auto_masks,
    clean_region,
    hysteresis_masks,
    masks_from_share,
    residual_error,
    reference_latents,
    refine_masks,
    residual_masks,
    robust_threshold,
)
from innout_core.errors import BadInputError
from innout_core.joint import JointConfig, mask_iou

from tests.innout_core.tiny_video import occluded_video


def _moving_square(T: int = 5, H: int = 48, side: int = 12) -> torch.Tensor:
    """[T,1,H,H] in {0,1}: a square moving 3 px right per frame (1 = occluder)."""
    m = torch.zeros(T, 1, H, H)
    for t in range(T):
        x = 6 + 3 * t
        m[t, :, 16 : 16 + side, x : x + side] = 1
    return m


def test_residual_error_is_mean_abs_rgb_difference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    e = residual_error(a, b)
    assert e.shape == (2, 1, 8, 8)
    assert torch.allclose(e, (a - b).abs().mean(dim=1, keepdim=True))
    # the box blur keeps the mean of a constant map and spreads a single spike over k x k pixels
    spike = torch.zeros(1, 3, 9, 9)
    spike[..., 4, 4] = 0.9
    blurred = residual_error(spike, torch.zeros_like(spike), blur=3)
    assert torch.allclose(blurred[0, 0, 3:6, 3:6], torch.full((3, 3), 0.1))
    assert float(blurred[0, 0, 0, 0]) == 0.0


def test_robust_threshold_ignores_a_minority_of_outliers():
    v = torch.cat([torch.full((90,), 0.02), torch.full((10,), 0.9)])
    assert robust_threshold(v, 3.0) == pytest.approx(0.02)  # MAD of the majority is 0
    assert robust_threshold(v, 3.0, floor=0.1) == pytest.approx(0.1)
    noisy = torch.linspace(0, 1, 101)  # median 0.5, MAD 0.25
    assert robust_threshold(noisy, 2.0) == pytest.approx(0.5 + 2 * 1.4826 * 0.25, rel=1e-5)


def test_hysteresis_grows_only_connected_weak_pixels():
    s = torch.zeros(1, 1, 10, 10)
    s[0, 0, 2, 2] = 1.0  # seed
    s[0, 0, 2, 3:7] = 0.4  # weak run touching the seed
    s[0, 0, 8, 8] = 0.4  # isolated weak pixel
    out = hysteresis_masks(s, high=0.5, low=0.3, temporal=0)
    expect = torch.zeros_like(s)
    expect[0, 0, 2, 2:7] = 1
    assert torch.equal(out, expect)


def test_hysteresis_links_weak_pixels_through_time_only_when_asked():
    s = torch.zeros(3, 1, 8, 8)
    s[0, 0, 4, 4] = 1.0  # strong in frame 0
    s[1, 0, 4, 4] = 0.4  # weak at the same place in frame 1
    s[2, 0, 4, 5] = 0.4  # and next to it in frame 2
    s[2, 0, 0, 0] = 0.4  # unrelated weak speck
    per_frame = hysteresis_masks(s, 0.5, 0.3, temporal=0)
    linked = hysteresis_masks(s, 0.5, 0.3, temporal=1)
    assert per_frame.sum() == 1
    assert linked[1, 0, 4, 4] == 1 and linked[2, 0, 4, 5] == 1
    assert linked[2, 0, 0, 0] == 0 and linked.sum() == 3


def test_hysteresis_rejects_inverted_thresholds():
    with pytest.raises(BadInputError, match="low threshold"):
        hysteresis_masks(torch.zeros(1, 1, 4, 4), high=0.2, low=0.5)


def test_clean_region_removes_specks_and_fills_holes():
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, 8:20, 8:20] = 1
    m[0, 0, 13, 13] = 0  # hole
    m[0, 0, 28, 28] = 1  # speck
    out = clean_region(m, open_size=3, close_size=5, dilate=1)
    expect = torch.zeros_like(m)
    expect[0, 0, 8:20, 8:20] = 1
    assert torch.equal(out, expect)
    assert torch.equal(clean_region(expect, 1, 1, 3).sum(), torch.tensor(14.0 * 14))


def test_residual_masks_recover_a_moving_occluder_under_noise():
    occ = _moving_square()
    g = torch.Generator().manual_seed(1)
    recon = torch.rand(occ.shape[0], 3, 48, 48, generator=g) * 2 - 1
    noise = 0.05 * torch.randn(recon.shape, generator=g)
    colour = torch.tensor([0.8, -0.6, 0.7]).view(1, 3, 1, 1)
    frames = torch.where(occ.bool().expand_as(recon), colour.expand_as(recon), recon + noise).clamp(-1, 1)
    masks = residual_masks(frames, recon, ResidualMaskConfig(blur=1, dilate=1, close_size=3))
    assert masks.shape == (occ.shape[0], 1, 48, 48) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert mask_iou(1 - masks, occ) > 0.9
    # no occluder, only noise: (almost) nothing is flagged
    clean = residual_masks((recon + noise).clamp(-1, 1), recon, ResidualMaskConfig())
    assert float((1 - clean).mean()) < 0.01


def test_residual_masks_reject_mismatched_inputs():
    with pytest.raises(BadInputError, match="differ in shape"):
        residual_masks(torch.zeros(2, 3, 8, 8), torch.zeros(3, 3, 8, 8))
    with pytest.raises(BadInputError, match="frames must be"):
        residual_masks(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))


def test_masks_from_share_upsample_and_threshold():
    occ = _moving_square(T=4, H=32, side=8)
    share = 0.9 * occ + 0.05  # the OOD field took the occluder, a little fog elsewhere
    masks = masks_from_share(share, 64, ShareMaskConfig(dilate=1))
    assert masks.shape == (4, 1, 64, 64)
    up = torch.nn.functional.interpolate(occ, size=(64, 64), mode="nearest")
    assert mask_iou(1 - masks, up) > 0.85
    assert float(masks.min()) == 0.0 and float(masks.max()) == 1.0
    fog = masks_from_share(torch.full((2, 1, 16, 16), 0.2), 32)
    assert torch.equal(fog, torch.ones(2, 1, 32, 32))


def test_auto_mask_config_nests_the_sources_and_forbids_unknown_keys():
    from pydantic import ValidationError

    c = AutoMaskConfig()
    assert (c.source, c.reference) == ("residual", "canonical")
    assert c.residual == ResidualMaskConfig() and c.share == ShareMaskConfig()
    assert JointConfig().auto_mask == c
    ok = JointConfig.model_validate({"auto_mask": {"source": "share", "reference": "frame",
                                                   "share": {"first_pass_steps": 50}}})
    assert ok.auto_mask.share.first_pass_steps == 50 and ok.auto_mask.reference == "frame"
    for bad in ({"k_mad": 3.0}, {"reference": "canon"}, {"source": "parsing"}, {"residual": {"kmad": 1}},
                {"share": {"high": 1.5}}):
        with pytest.raises(ValidationError):
            JointConfig.model_validate({"auto_mask": bad})


def test_reference_latents():
    ws = torch.randn(3, 4, 8)
    wc = torch.randn(1, 4, 8)
    got, used = reference_latents(ws, wc, "canonical")
    assert used == "canonical" and got.shape == ws.shape and torch.equal(got, wc.expand(3, -1, -1))
    assert torch.equal(reference_latents(ws, wc[0], "canonical")[0], got)  # [L,D] accepted
    assert reference_latents(ws, wc, "frame") == (ws, "frame")
    assert reference_latents(ws, None, "canonical") == (ws, "frame")
    with pytest.raises(BadInputError, match="canonical latent must be"):
        reference_latents(ws, torch.randn(2, 4, 8), "canonical")
    with pytest.raises(BadInputError, match="NaN"):
        reference_latents(ws, torch.full((1, 4, 8), float("nan")), "canonical")


@pytest.fixture(scope="module")
def pasted():
    """Tiny generator, 2 frames from known latents with a solid square pasted in, true masks."""
    return occluded_video()


def test_auto_masks_parsing_intersection(pasted):
    """A user face-parsing map (1 = may be OOD) restricts the OOD region to where it allows it."""
    G, frames, c, ws, masks = pasted
    cfg = AutoMaskConfig(reference="frame")
    plain, used = auto_masks(G, frames, c, ws, cfg, torch.Generator().manual_seed(0))
    assert used == "residual vs frame"
    assert mask_iou(1 - plain, 1 - masks) > 0.75  # the pasted square (0.79: the default dilation adds a rim)
    parsing = torch.zeros_like(masks)
    parsing[..., :, :60] = 1  # left half may be OOD
    cut, _ = auto_masks(G, frames, c, ws, cfg, torch.Generator().manual_seed(0), parsing=parsing)
    torch.testing.assert_close(1 - cut, (1 - plain) * parsing, atol=0, rtol=0)
    assert (1 - cut)[..., :60].sum() > 0 and (1 - cut)[..., 60:].sum() == 0 and (1 - plain)[..., 60:].sum() > 0
    with pytest.raises(BadInputError, match="parsing masks"):
        auto_masks(G, frames, c, ws, cfg, torch.Generator().manual_seed(0), parsing=parsing[:, :, :64])


class _PixelGenerator:
    """A stand-in generator whose latents are the images it renders ([n,3,H,W]): what a fit returns is what the
    residual is taken against, with no rendering noise."""

    def synthesis(self, ws, c, noise_mode="const", generator=None):
        return SimpleNamespace(image=ws)


def test_refinement_rounds_take_residual_masks_against_each_masked_fit():
    """Each round fits on the face region of the previous masks and replaces them with residual masks against that
    fit's render: a fit that shows the face and cannot paint the occluder gives the occluder back, however poor the
    first masks were."""
    occ = _moving_square()
    g = torch.Generator().manual_seed(2)
    clean = (torch.rand(occ.shape[0], 3, 48, 48, generator=g) * 2 - 1) * 0.3
    frames = torch.where(occ.bool().expand_as(clean), torch.full_like(clean, 0.9), clean)
    poor = torch.ones_like(occ)
    poor[:, :, 30:, :] = 0  # the first masks hide the wrong place and miss the square
    seen: list[torch.Tensor] = []

    def fit(m: torch.Tensor) -> torch.Tensor:
        seen.append(m.clone())
        return clean

    cfg = ResidualMaskConfig(blur=1, dilate=1, close_size=3)
    out = refine_masks(_PixelGenerator(), frames, torch.zeros(occ.shape[0], 25), poor, fit, cfg, None, rounds=2)
    assert len(seen) == 2 and torch.equal(seen[0], poor) and torch.equal(seen[1], out)  # round 2 from round 1's
    assert mask_iou(1 - out, occ) > 0.9 and mask_iou(1 - poor, occ) == 0.0


def test_auto_masks_refinement_needs_a_masked_fit(pasted):
    G, frames, c, ws, masks = pasted
    cfg = AutoMaskConfig(reference="frame", refine_rounds=1)
    calls: list[torch.Tensor] = []

    def fit(m: torch.Tensor) -> torch.Tensor:
        calls.append(m)
        return ws

    plain, _ = auto_masks(G, frames, c, ws, cfg.model_copy(update={"refine_rounds": 0}), torch.Generator().manual_seed(0))
    out, used = auto_masks(G, frames, c, ws, cfg, torch.Generator().manual_seed(0), masked_fit=fit)
    assert used == "residual vs frame, refined 1x against the masked fit"
    assert len(calls) == 1 and torch.equal(calls[0], plain) and out.shape == plain.shape
    with pytest.raises(BadInputError, match="refine_rounds"):
        auto_masks(G, frames, c, ws, cfg, torch.Generator().manual_seed(0))


def test_auto_masks_share_source_starts_its_first_pass_from_the_reference(pasted):
    G, frames, c, ws, masks = pasted
    seen = {}
    share = torch.zeros(2, 1, 16, 16)
    share[:, :, 4:8, 4:8] = 0.9  # a confident OOD square

    def fake_pass(ws_, seed, steps):
        seen.update(ws=ws_, seed=seed, steps=steps)
        return share

    cfg = AutoMaskConfig(source="share", share={"first_pass_steps": 7})
    wc = ws[1:]
    out, used = auto_masks(G, frames, c, ws, cfg, torch.Generator().manual_seed(0), w_canonical=wc,
                           share_pass=fake_pass)
    assert used == "share vs canonical" and torch.equal(out, masks_from_share(share, frames.shape[-1], cfg.share))
    assert torch.equal(seen["ws"], wc.expand(2, -1, -1)) and seen["steps"] == 7 and isinstance(seen["seed"], int)
    with pytest.raises(BadInputError, match="share_pass"):
        auto_masks(G, frames, c, ws, cfg, torch.Generator().manual_seed(0))


def test_stage_a_share_masks_come_from_its_own_first_pass(pasted, monkeypatch):
    # stage A hands auto_masks a first pass bound to its own generator, frames, cameras and config
    import innout_core.joint as joint

    G, frames, c, ws, _ = pasted
    seen = {}
    share = torch.zeros(frames.shape[0], 1, 16, 16)
    share[:, :, 2:9, 3:10] = 0.95

    def fake_first_pass(G_, frames_, cams_, joint_cfg, ws_, seed, steps):
        seen.update(G=G_, frames=frames_, joint=joint_cfg, steps=steps)
        return share

    monkeypatch.setattr(joint, "first_pass_share", fake_first_pass)
    cfg = JointConfig.preset("tiny-demo").model_copy(update={
        "steps": 1, "checkpoint_every": 0, "auto_mask": AutoMaskConfig(source="share", reference="frame",
                                                                       share={"first_pass_steps": 3})})
    res = joint.run_stage_a(G, frames, c, ws, cfg, torch.Generator().manual_seed(0))
    assert seen["G"] is G and seen["frames"] is frames and seen["joint"] is cfg and seen["steps"] == 3
    assert torch.equal(res.masks.cpu(), masks_from_share(share, frames.shape[-1], cfg.auto_mask.share))
