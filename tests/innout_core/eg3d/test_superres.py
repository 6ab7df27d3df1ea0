"""SuperresolutionHybrid8XDC: reference case g (a: 32->128 resize + +-256 clamps, b: const noise, c: 128 input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from innout_core.eg3d.checkpoint import load_generator

from .reference import on_grid


@pytest.fixture(scope="module")
def sr_case(reference_dir):
    ref = reference_dir
    g = load_generator(ref / "small-G_ema.pkl")
    data = np.load(ref / "small-sr.npz")
    d = {k: torch.from_numpy(data[k]) for k in data.files}
    sr = g.superresolution
    inter = {}
    hook = sr.block0.register_forward_hook(lambda m, i, o: inter.__setitem__("block0_img", o[1].clone()))
    with torch.inference_mode():
        a = sr(d["sr/a_rgb"], d["sr/a_x"], d["sr/a_ws"], noise_mode="none")
        hook.remove()
        b = sr(d["sr/a_rgb"][:1], d["sr/a_x"][:1], d["sr/a_ws"][:1], noise_mode="const")
        c = sr(d["sr/c_rgb"], d["sr/c_x"], d["sr/c_ws"], noise_mode="none")
    return d, a, b, c, inter


def test_case_a_item0_and_block0(sr_case):
    d, a, _, _, inter = sr_case
    assert a.shape == (2, 3, 512, 512) and a.dtype == torch.float32
    # full-size images are stored on a grid (border bands + every 7th row/column; see the data README)
    key = "sr/a_image_noise_none_item0_grid"
    torch.testing.assert_close(on_grid(a[:1], d[key + "_idx"]), d[key], atol=5e-5, rtol=0)
    key = "sr/a_item0_block0_img_grid"
    torch.testing.assert_close(on_grid(inter["block0_img"][:1], d[key + "_idx"]), d[key], atol=5e-5, rtol=0)


def test_case_a_item1_clamped(sr_case):
    """Item 1 drives every layer into the +-256 clamp; without the clamp values reach far beyond 256."""
    d, a, _, _, _ = sr_case
    torch.testing.assert_close(a[1:, :, :128, :128], d["sr/a_image_noise_none_item1_crop_tl"], atol=1e-2, rtol=0)
    torch.testing.assert_close(a[1:, :, -128:, -128:], d["sr/a_image_noise_none_item1_crop_br"], atol=1e-2, rtol=0)


def test_case_b_const_noise(sr_case):
    d, _, b, _, _ = sr_case
    torch.testing.assert_close(b[:, :, :128, :128], d["sr/b_image_item0_noise_const_crop_tl"], atol=5e-5, rtol=0)
    torch.testing.assert_close(b[:, :, -128:, -128:], d["sr/b_image_item0_noise_const_crop_br"], atol=5e-5, rtol=0)


def test_case_c_native_128_input(sr_case):
    d, _, _, c, _ = sr_case
    assert c.shape == (1, 3, 512, 512)
    key = "sr/c_image_noise_none_grid"
    torch.testing.assert_close(on_grid(c, d[key + "_idx"]), d[key], atol=5e-5, rtol=0)


def test_sr_uses_only_last_w(sr_case):
    """Changing ws[:, :-1] leaves the SR output unchanged (docs/eg3d.md §5: SR is styled by w13 only)."""
    from innout_core.eg3d.configs import build_generator

    g = build_generator("tiny")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 32, 32, 32, generator=gen) * 2 - 1
    ws = torch.randn(1, g.num_ws, 512, generator=gen)
    ws2 = ws.clone()
    ws2[:, :-1] += 1.0
    with torch.no_grad():
        y1 = g.superresolve(x[:, :3], x, ws)
        y2 = g.superresolve(x[:, :3], x, ws2)
        ws2[:, -1] += 1.0
        y3 = g.superresolve(x[:, :3], x, ws2)
    assert y1.shape == (1, 3, 128, 128)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
