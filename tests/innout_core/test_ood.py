"""OOD field: initialisation, decoder maths by hand, plane averaging, phi per frame, state round trip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from innout_core.errors import BadInputError
from innout_core.ood import OODField


def test_init_shapes_stats_and_determinism() -> None:
    f = OODField(5, channels=32, resolution=64, generator=torch.Generator().manual_seed(1))
    assert f.triplanes.shape == (1, 3, 32, 64, 64) and f.phi.shape == (5, 32)
    assert abs(f.triplanes.mean().item()) < 0.01 and abs(f.triplanes.std().item() - 1) < 0.01
    assert f.decoder.net[0].weight.shape == (64, 64) and f.decoder.net[2].weight.shape == (34, 64)
    assert torch.count_nonzero(f.decoder.net[0].bias) == 0
    g = OODField(5, channels=32, resolution=64, generator=torch.Generator().manual_seed(1))
    for (k, a), (_, b) in zip(f.state_dict().items(), g.state_dict().items()):
        assert torch.equal(a, b), k
    state = torch.get_rng_state()
    OODField(2, resolution=8)
    assert torch.equal(torch.get_rng_state(), state)  # no global RNG use


def test_query_matches_hand_computation() -> None:
    f = OODField(3, channels=4, resolution=8, phi_dim=2, hidden_dim=5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f.triplanes.zero_()
        for p, val in enumerate([1.0, 2.0, 6.0]):  # constant planes -> mean = 3
            f.triplanes[0, p, :, :, :] = val * torch.arange(1, 5).view(4, 1, 1)
    pts = torch.tensor([[[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]]])  # inside the unit cube
    idx = torch.tensor([2])
    colors, sigma, blend = f.query(pts, idx)
    feat = 3.0 * torch.arange(1, 5, dtype=torch.float32)
    x = torch.cat([feat, f.phi[2].detach()])
    l0, l2 = f.decoder.net[0], f.decoder.net[2]
    h = F.softplus(F.linear(x, l0.weight / math.sqrt(6), l0.bias))
    o = F.linear(h, l2.weight / math.sqrt(5), l2.bias)
    assert o.shape == (6,)
    for j in range(2):
        torch.testing.assert_close(sigma[0, j, 0], o[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(colors[0, j], torch.sigmoid(o[1:5]) * 1.002 - 0.001, atol=1e-6, rtol=0)
        torch.testing.assert_close(blend[0, j, 0], torch.sigmoid(o[5]), atol=1e-6, rtol=0)


def test_phi_selects_frame_and_gradients_flow() -> None:
    f = OODField(4, channels=8, resolution=16, generator=torch.Generator().manual_seed(3))
    pts = torch.rand(2, 10, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    c, s, b = f.query(pts, torch.tensor([0, 3]))
    c2, _, _ = f.query(pts[1:], torch.tensor([3]))
    torch.testing.assert_close(c[1:], c2)
    assert (c > -0.0011).all() and (c < 1.0011).all() and (b > 0).all() and (b < 1).all()
    (c.sum() + s.sum() + b.sum()).backward()
    assert f.phi.grad[[0, 3]].abs().sum() > 0 and f.phi.grad[[1, 2]].abs().sum() == 0
    assert f.triplanes.grad.abs().sum() > 0


def test_state_round_trip_and_errors() -> None:
    f = OODField(3, channels=8, resolution=16, generator=torch.Generator().manual_seed(5))
    st, phi = f.ood_state(), f.phi.detach().clone()
    assert "phi" not in st
    g = OODField.from_state(st, phi)
    pts = torch.rand(1, 6, 3) - 0.5
    for a, b in zip(f.query(pts, torch.tensor([1])), g.query(pts, torch.tensor([1]))):
        assert torch.equal(a, b)
    with pytest.raises(BadInputError):
        f.query(pts[0], torch.tensor([0]))
    with pytest.raises(BadInputError):
        f.query(pts, torch.tensor([0, 1]))
    with pytest.raises(BadInputError):
        OODField.from_state({"triplanes": st["triplanes"]}, phi)
