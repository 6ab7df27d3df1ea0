"""Automatic OOD masks: residual evidence, spatio-temporal hysteresis, clean-up, masks from an OOD-share map."""

from __future__ import annotations

import pytest
import torch

from innout_core.auto_masks import (
    ResidualMaskConfig,
    ShareMaskConfig,
    clean_region,
    hysteresis_masks,
    masks_from_share,
    residual_error,
    residual_masks,
    robust_threshold,
)
from innout_core.errors import BadInputError
from innout_core.joint import mask_iou


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
