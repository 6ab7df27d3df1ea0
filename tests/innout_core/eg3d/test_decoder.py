"""OSGDecoder parity with the official decoder (case c, decoder_direct) using the small pickle's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from innout_core.eg3d import rendering as R
from innout_core.eg3d.checkpoint import read_official_pickle
from innout_core.eg3d.decoder import OSGDecoder

from .reference import planes_item0


@pytest.fixture(scope="module")
def cases(reference_dir) -> dict[str, torch.Tensor]:
    data = np.load(reference_dir / "small-cases.npz")
    return {k: torch.from_numpy(data[k]) for k in data.files if k.startswith("decoder")}


@pytest.fixture(scope="module")
def decoder(reference_dir) -> OSGDecoder:
    state = read_official_pickle(reference_dir / "small-G_ema.pkl").state_dict
    dec = OSGDecoder(32)
    dec.load_state_dict({k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")})
    return dec.eval().requires_grad_(False)


def test_official_state_dict_names():
    dec = OSGDecoder(32)
    shapes = {k: tuple(v.shape) for k, v in dec.state_dict().items()}
    assert shapes == {"net.0.weight": (64, 32), "net.0.bias": (64,), "net.2.weight": (33, 64), "net.2.bias": (33,)}


def test_decoder_direct_matches_official(cases, decoder):
    rgb, sigma = decoder(cases["decoder_direct/sampled_features"])
    assert rgb.shape == (1, 256, 32) and sigma.shape == (1, 256, 1)
    assert (rgb - cases["decoder_direct/rgb"]).abs().max().item() <= 5e-6
    assert (sigma - cases["decoder_direct/sigma"]).abs().max().item() <= 2e-4


def test_decoder_on_sampled_planes_matches_official(cases, decoder, reference_dir):
    planes = planes_item0(reference_dir)
    feats = R.sample_from_planes(planes.view(1, 3, 32, 256, 256), cases["decoder/points"], 1.0)
    mean = feats.mean(1)
    assert (mean - cases["decoder/mean_features"]).abs().max().item() <= 1e-5
    hidden = decoder.net[1](decoder.net[0](mean))
    assert (hidden - cases["decoder/hidden"]).abs().max().item() <= 2e-4
    raw = decoder.net(mean)
    assert (raw - cases["decoder/raw_out"]).abs().max().item() <= 2e-4
    rgb, sigma = decoder(feats)  # the strided view sample_from_planes returns
    rgb_c, sigma_c = decoder(feats.contiguous())  # and a contiguous copy: same numbers
    assert torch.equal(rgb, rgb_c) and torch.equal(sigma, sigma_c)
    assert (sigma - cases["decoder/sigma"]).abs().max().item() <= 2e-4
    assert (rgb - cases["decoder/rgb"]).abs().max().item() <= 5e-6
    assert rgb.min() > -0.001 and rgb.max() < 1.001


def test_decoder_formula_against_hand_computation():
    """sigma = raw[..., 0], rgb = sigmoid(raw[..., 1:]) * 1.002 - 0.001 with equalised-lr FCs (docs/eg3d.md §7)."""
    g = torch.Generator().manual_seed(0)
    dec = OSGDecoder(4, hidden_dim=5, decoder_output_dim=3, decoder_lr_mul=0.5)
    with torch.no_grad():
        for p in dec.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    f = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float32)
    x = f.double().mean(1)
    l0, l2 = dec.net[0], dec.net[2]
    h = torch.nn.functional.softplus(x @ (l0.weight.double() * 0.5 / 2).T + l0.bias.double() * 0.5)
    o = h @ (l2.weight.double() * 0.5 / 5 ** 0.5).T + l2.bias.double() * 0.5
    rgb, sigma = dec(f)
    assert torch.allclose(sigma.double(), o[..., :1], atol=1e-5)
    assert torch.allclose(rgb.double(), torch.sigmoid(o[..., 1:]) * 1.002 - 0.001, atol=1e-6)


def test_decoder_rejects_bad_shape():
    with pytest.raises(ValueError, match="sampled_features"):
        OSGDecoder(32)(torch.zeros(1, 3, 5, 16))


def test_fast_softplus_matches_torch_softplus(device):
    """Values within 1e-6 absolute (float32 rounding of 1 + e^x), the x > 20 branch exact, same gradients."""
    from innout_core.eg3d.decoder import Softplus

    x = torch.cat([torch.linspace(-60, 60, 20001), torch.tensor([20.0, 20.0001, 19.9999, -1e-8, 0.0])]).to(device)
    x.requires_grad_(True)
    y = Softplus()(x)
    ref = torch.nn.functional.softplus(x)
    assert (y - ref).abs().max().item() <= 1e-6
    assert torch.equal(y[x > 20], x[x > 20]) and (y >= 0).all()
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    assert (g - g_ref).abs().max().item() <= 1e-6
