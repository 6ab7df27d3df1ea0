"""Ground-truth videos on the `tiny` generator: determinism, occluder/clean consistency, masks, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from innout_core.eg3d.configs import build_generator
from innout_core.synthetic import (
    OccluderConfig,
    SyntheticVideoConfig,
    make_ground_truth_video,
    occluder_field,
    save_ground_truth_video,
)


@pytest.fixture(scope="module")
def G():
    return build_generator("tiny").requires_grad_(False)


@pytest.fixture(scope="module")
def cfg():
    return SyntheticVideoConfig(n_frames=2, seed=3, occluder=OccluderConfig(kind="box", enter_frame=1, stripes=0.0))


@pytest.fixture(scope="module")
def video(G, cfg):
    return make_ground_truth_video(G, cfg)


def test_occluder_field_analytic():
    cfg = OccluderConfig(kind="sphere", size=0.1, sharpness=200.0, density=50.0, stripes=0.0)
    centre = torch.tensor([[0.1, 0.0, 0.3]])
    pts = torch.tensor([[[0.1, 0.0, 0.3], [0.1, 0.0, 0.3 + 0.2], [0.1 + 0.1, 0.0, 0.3]]])
    feats = torch.linspace(0, 1, 32)
    col, sig, b = occluder_field(pts, centre, cfg, feats)
    assert b[0, 0, 0] > 0.999 and b[0, 1, 0] < 1e-6  # inside / 0.1 outside the surface
    assert abs(float(b[0, 2, 0]) - 0.5) < 1e-5  # on the surface: sigmoid(0)
    torch.testing.assert_close(sig, 50.0 * b)
    torch.testing.assert_close(col, feats.expand(1, 3, 32))
    box = OccluderConfig(kind="box", size=0.1, thickness=0.05, sharpness=200.0)
    _, _, bb = occluder_field(torch.tensor([[[0.19, 0.09, 0.3], [0.1, 0.0, 0.36]]]), centre, box, feats)
    assert bb[0, 0, 0] > 0.8 and bb[0, 1, 0] < 0.2  # inside the square's corner / beyond its half-depth


def test_video_shapes_and_ranges(G, video, cfg):
    T, H, R = cfg.n_frames, G.init_kwargs["img_resolution"], G.neural_rendering_resolution
    assert video.frames.shape == video.clean.shape == (T, 3, H, H)
    assert video.masks.shape == (T, 1, H, H) and set(video.masks.unique().tolist()) <= {0.0, 1.0}
    assert video.cameras.shape == (T, 25) and video.ws.shape == (T, G.num_ws, G.w_dim)
    assert video.opacity.shape == (T, 1, R, R)
    assert float(video.opacity.min()) >= 0 and float(video.opacity.max()) <= 1


def test_clean_where_no_occluder_and_occluder_where_opaque(video):
    # frame 0 precedes enter_frame: b == 0 everywhere, the composite is exactly the plain face march
    assert torch.equal(video.frames[0], video.clean[0]) and bool(video.masks[0].all())
    assert not bool(video.occluded()[0]) and bool(video.occluded()[1:].all())
    op = video.opacity[1:, 0]
    free = op < 1e-6
    torch.testing.assert_close(video.raw[1:].permute(1, 0, 2, 3)[:, free], video.clean_raw[1:].permute(1, 0, 2, 3)[:, free],
                               atol=1e-4, rtol=0)  # residual occluder weight < 1e-6 per ray + fp32 cumprod
    # fully opaque occluder rays show the occluder colour (constant, stripes off): tight spread across pixels
    assert float(op.max()) > 0.95
    opaque = op > 0.98
    assert int(opaque.sum()) > 10
    cols = video.raw[1:].permute(1, 0, 2, 3)[:, opaque]
    assert float(cols.std(dim=1).max()) < 0.05  # <= 2% face leaking through
    # masks are the thresholded opacity (bilinear-upsampled)
    frac_mask = (1 - video.masks[1:]).mean()
    frac_op = (op > 0.5).float().mean()
    assert abs(float(frac_mask) - float(frac_op)) < 0.03
    assert 0.01 < float(frac_mask) < 0.6


def test_deterministic_given_seed(G, cfg, video):
    again = make_ground_truth_video(G, cfg)
    assert torch.equal(again.frames, video.frames) and torch.equal(again.masks, video.masks)


def test_save_ground_truth_video(video, tmp_path):
    from innout_core.video import probe

    paths = save_ground_truth_video(video, tmp_path / "gt", fps=25)
    assert probe(paths["frames_mp4"]).frame_count == video.frames.shape[0]
    assert probe(paths["clean_mp4"]).frame_count == video.frames.shape[0]
    data = np.load(paths["masks"])
    np.testing.assert_array_equal(data["masks"], video.masks.numpy().astype(np.uint8))
    np.testing.assert_array_equal(np.load(paths["cameras"]), video.cameras.numpy())
    assert len(list(paths["frames"].glob("*.png"))) == video.frames.shape[0]
    assert not list((tmp_path / "gt").glob(".*tmp*"))
