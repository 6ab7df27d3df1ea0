"""Losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from innout_core.errors import BadInputError
from innout_core.losses import (
    blend_area_loss,
    blend_entropy_loss,
    delta_reg_loss,
    l2_loss,
    latent_reg_loss,
    lpips_loss,
    masked_l2_loss,
    share_mask_loss,
)


def test_l2_hand() -> None:
    x = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    y = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert l2_loss(x, y).item() == pytest.approx((1 + 1 + 0.25 + 0) / 4)
    with pytest.raises(BadInputError):
        l2_loss(x, y[:1])


def test_masked_l2_hand() -> None:
    x = torch.zeros(1, 3, 1, 2)
    y = torch.zeros(1, 3, 1, 2)
    x[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    x[0, :, 0, 1] = 10.0
    region = torch.tensor([[[[1.0, 0.0]]]])  # only pixel 0 counted, 3 channels
    assert masked_l2_loss(x, y, region).item() == pytest.approx((1 + 4 + 9) / 3)
    assert masked_l2_loss(x, y, torch.zeros_like(region)).item() == 0.0  # empty region: 0, not NaN


def test_share_mask_loss_is_binary_cross_entropy() -> None:
    """Against torch's BCE (an independent implementation); the share is pushed towards the masks' OOD region."""
    g = torch.Generator().manual_seed(0)
    share = torch.rand(2, 1, 4, 4, generator=g) * 0.98 + 0.01
    region = (torch.rand(2, 1, 4, 4, generator=g) > 0.5).float()
    ref = torch.nn.functional.binary_cross_entropy(share, region)
    assert share_mask_loss(share, region).item() == pytest.approx(ref.item(), rel=1e-6)
    assert share_mask_loss(share, region, "sum").item() == pytest.approx(ref.item() * share.numel(), rel=1e-5)
    s = share.clone().requires_grad_(True)
    share_mask_loss(s, region).backward()
    assert (s.grad[region > 0] < 0).all() and (s.grad[region == 0] > 0).all()  # share up on OOD, down on face
    # a share of exactly 0 or 1 stays finite (clamped)
    edge = share_mask_loss(torch.tensor([0.0, 1.0]).view(1, 1, 1, 2), torch.tensor([1.0, 0.0]).view(1, 1, 1, 2))
    assert torch.isfinite(edge) and edge.item() == pytest.approx(-math.log(1e-4), rel=1e-3)


def test_blend_entropy_hand() -> None:
    b = torch.tensor([0.5, 1.0, 0.0, 0.3])
    def h(p):
        p = min(max(p, 1e-19), 1.0)
        q = max(1 - p, 1e-19)
        return -(p * math.log(p) + q * math.log(q))
    expect2 = sum(h(v**2) for v in b.tolist()) / 4
    expect1 = sum(h(v) for v in b.tolist()) / 4
    assert blend_entropy_loss(b, skew=2.0).item() == pytest.approx(expect2, rel=1e-6)
    assert blend_entropy_loss(b, skew=1.0).item() == pytest.approx(expect1, rel=1e-6)
    # b^2 = 0.5 maximises the skew-2 entropy at ln 2
    assert blend_entropy_loss(torch.tensor([math.sqrt(0.5)])).item() == pytest.approx(math.log(2), rel=1e-6)
    bb = torch.tensor([0.0, 1.0, 0.4], requires_grad=True)
    blend_entropy_loss(bb).backward()
    assert torch.isfinite(bb.grad).all()


def test_blend_area_hand() -> None:
    b = torch.tensor([0.1, 0.9, 0.3, 0.2, 0.0, 0.4]).reshape(1, 2, 3, 1)
    # one set: ray maxima 0.9, 0.4 -> mean of squares
    assert blend_area_loss(b).item() == pytest.approx((0.81 + 0.16) / 2)
    coarse = torch.tensor([True, False, True, False, True, True]).reshape(1, 2, 3, 1)
    # coarse maxima: ray0 max(0.1, 0.3)=0.3, ray1 max(0.0, 0.4)=0.4; fine: ray0 0.9, ray1 0.2
    expect = 0.5 * ((0.09 + 0.16) / 2 + (0.81 + 0.04) / 2)
    assert blend_area_loss(b, coarse).item() == pytest.approx(expect)


def test_latent_reg_hand() -> None:
    ws = torch.zeros(2, 14, 512)
    ws[0, 0, 0] = 3.0
    ws[0, 1, 1] = 4.0  # frame 0: ||d|| = 5
    ws[1, 5, 7] = 2.0  # frame 1: ||d|| = 2
    w_avg = torch.zeros(512)
    assert latent_reg_loss(ws, w_avg, squared=True).item() == pytest.approx((25 + 4) / 2)
    assert latent_reg_loss(ws, w_avg, squared=False).item() == pytest.approx((5 + 2) / 2)
    w = torch.zeros(1, 14, 512, requires_grad=True)
    latent_reg_loss(w, w_avg, squared=False).backward()
    assert torch.isfinite(w.grad).all()


def test_delta_reg_hand() -> None:
    ws = torch.zeros(1, 14, 512)
    ws[0, 0, 0] = 1.0  # w0
    ws[0, 13, 0] = 4.0  # delta 13 = 3 (only counted by the paper's 13 deltas)
    # deltas 1..12: each = -w0 -> norm 1
    assert delta_reg_loss(ws, 13, squared=True).item() == pytest.approx(12 * 1 + 9)
    assert delta_reg_loss(ws, 12, squared=False).item() == pytest.approx(12.0)
    assert delta_reg_loss(ws, 13, squared=False).item() == pytest.approx(15.0)
    with pytest.raises(BadInputError):
        delta_reg_loss(torch.zeros(1, 5, 512), 13)


def test_lpips_loss_is_map_mean() -> None:
    import lpips

    torch.manual_seed(0)
    model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, spatial=True, verbose=False)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    m = model(x, y)
    assert m.shape == (1, 1, 32, 32)
    assert lpips_loss(model, x, y).item() == pytest.approx(m.mean().item())
    assert lpips_loss(model, x, x).item() == pytest.approx(0.0, abs=1e-7)


def test_lpips_vgg_under_bf16_autocast_is_within_tolerance(device) -> None:
    """Stage B runs LPIPS-VGG under the SR's autocast: the loss and its gradient stay close to fp32."""
    import warnings

    import lpips

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, spatial=True, verbose=False).to(device)
    model.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1).to(device)
    x0 = (y + 0.3 * torch.randn(1, 3, 64, 64, generator=g).to(device)).clamp(-1, 1)
    out = {}
    for amp in (False, True):
        x = x0.clone().requires_grad_(True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = lpips_loss(model, x, y).float()
        loss.backward()
        out[amp] = (loss.item(), x.grad)
    assert out[True][0] != out[False][0]  # autocast really ran
    assert out[True][0] == pytest.approx(out[False][0], rel=5e-2)
    cos = torch.nn.functional.cosine_similarity(out[True][1].flatten(), out[False][1].flatten(), dim=0)
    assert cos > 0.98


def test_reductions_hand() -> None:
    x = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    assert l2_loss(x, torch.zeros_like(x), "sum").item() == pytest.approx(1 + 1 + 0.25)
    b = torch.tensor([0.1, 0.9, 0.3, 0.2, 0.0, 0.4]).reshape(1, 2, 3, 1)
    assert blend_area_loss(b, reduction="sum").item() == pytest.approx(0.81 + 0.16)
    region = torch.tensor([[[[1.0, 0.0]]]])
    xm = torch.zeros(1, 3, 1, 2)
    xm[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    assert masked_l2_loss(xm, torch.zeros_like(xm), region, reduction="sum").item() == pytest.approx(14.0)
    assert blend_entropy_loss(b, 1.0, "sum").item() == pytest.approx(6 * blend_entropy_loss(b, 1.0).item(), rel=1e-6)
    with pytest.raises(BadInputError):
        l2_loss(x, x, "max")


def test_paper_preset_has_the_papers_relative_weights() -> None:
    """Eq. 8 for one frame, by hand with numpy sums: sum_pixels ||C - C_gt||^2 + 1 * sum_rays sum_k H_b(b)
    + 1 * ||w - w_avg||^2 + 1e-3 * sum_{i=1..13} ||w_i - w_0||^2, against the paper preset's terms and weights."""
    import numpy as np

    from innout_core.joint import JointConfig

    cfg = JointConfig.preset("paper")
    g = torch.Generator().manual_seed(0)
    R, S = 4, 6
    raw = torch.rand(1, 3, R, R, generator=g) * 2 - 1
    target = torch.rand(1, 3, R, R, generator=g) * 2 - 1
    blend = torch.rand(1, R * R, S, 1, generator=g)
    ws = torch.randn(1, 14, 512, generator=g)
    w_avg = torch.randn(512, generator=g)
    terms = {"l2": l2_loss(raw, target, cfg.reduction),
             "blend_entropy": blend_entropy_loss(blend, cfg.blend_entropy_skew, cfg.reduction),
             "latent": latent_reg_loss(ws, w_avg, cfg.latent_squared),
             "delta": delta_reg_loss(ws, cfg.delta_count, cfg.delta_squared)}
    total = sum(getattr(cfg.weights, k) * v for k, v in terms.items()).item()
    rn, tn, bn, wn, an = (t.double().numpy() for t in (raw, target, blend, ws, w_avg))
    bb = np.clip(bn, 1e-19, 1.0)
    hb = -(bb * np.log(bb) + np.clip(1 - bb, 1e-19, None) * np.log(np.clip(1 - bb, 1e-19, None)))
    hand = (((rn - tn) ** 2).sum() + 1.0 * hb.sum() + 1.0 * ((wn[0] - an) ** 2).sum()
            + 1e-3 * sum(((wn[0, i] - wn[0, 0]) ** 2).sum() for i in range(1, 14)))
    assert total == pytest.approx(hand, rel=1e-5)
    # the official preset keeps the release's means; L_D (single image) has the paper's lambda_D
    assert JointConfig.preset("official").reduction == "mean" and cfg.weights.depth == 0.1


@pytest.mark.parametrize("kind", ["depth", "disparity"])
def test_depth_loss_against_a_hand_least_squares_fit(kind) -> None:
    import numpy as np

    from innout_core.losses import align_depth, depth_loss

    g = torch.Generator().manual_seed(0)
    rendered = (2.3 + torch.rand(2, 1, 5, 5, generator=g)).requires_grad_(True)
    mono = torch.rand(2, 1, 5, 5, generator=g) + 0.5
    want = []
    for i in range(2):
        x = mono[i].flatten().double().numpy()
        y = rendered[i].detach().flatten().double().numpy()
        y = 1 / y if kind == "disparity" else y
        (s, t), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)
        fit = s * x + t
        want.append(1 / fit if kind == "disparity" else fit)
    want = np.stack(want)
    got = align_depth(mono, rendered, kind).flatten(1).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    dn = rendered.detach().flatten(1).double().numpy()
    loss = depth_loss(rendered, mono, kind)
    assert loss.item() == pytest.approx(np.abs(dn - want).mean(), rel=1e-5)
    assert depth_loss(rendered, mono, kind, "sum").item() == pytest.approx(np.abs(dn - want).sum(), rel=1e-5)
    loss.backward()  # the gradient is sign(D_C - D_reg) / n: the fit itself is a constant
    np.testing.assert_allclose(rendered.grad.flatten(1).numpy(), np.sign(dn - want) / dn.size, rtol=1e-6)
    # an exact affine copy of the rendered depth costs nothing
    exact = 3.0 * rendered.detach() - 1.0 if kind == "depth" else 2.0 / rendered.detach() + 0.5
    assert depth_loss(rendered.detach(), exact, kind).item() < 1e-5
