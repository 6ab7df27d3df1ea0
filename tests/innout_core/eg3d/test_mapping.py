"""Mapping network: reference case a (embed, fc0, ws with truncation and cutoff) and FC initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from innout_core.eg3d.checkpoint import load_generator
from innout_core.eg3d.mapping import FullyConnectedLayer, MappingNetwork


@pytest.fixture(scope="module")
def small(reference_dir):
    ref = reference_dir
    g = load_generator(ref / "small-G_ema.pkl")
    data = np.load(ref / "small-cases.npz")
    return g, {k: torch.from_numpy(data[k]) for k in data.files if k.startswith("mapping/")}


@pytest.mark.parametrize(
    "psi,cutoff,key",
    [(1, None, "mapping/ws_psi1"), (0.7, None, "mapping/ws_psi0.7"), (0.7, 8, "mapping/ws_psi0.7_cutoff8")],
)
def test_case_a_ws(small, psi, cutoff, key):
    g, d = small
    ws = g.mapping(d["mapping/z"], d["mapping/c"], truncation_psi=psi, truncation_cutoff=cutoff)
    assert ws.shape == (4, 14, 512) and ws.dtype == torch.float32
    torch.testing.assert_close(ws, d[key], atol=2e-5, rtol=0)  # README: batch-split reordering 2.6e-6


def test_case_a_intermediates_and_w_avg(small):
    g, d = small
    seen = {}
    m = g.backbone.mapping
    hooks = [m.embed.register_forward_hook(lambda mod, i, o: seen.__setitem__("embed", o)),
             m.fc0.register_forward_hook(lambda mod, i, o: seen.__setitem__("fc0", o))]
    try:
        g.mapping(d["mapping/z"], d["mapping/c"])
    finally:
        for h in hooks:
            h.remove()
    torch.testing.assert_close(seen["embed"], d["mapping/embed_out"], atol=2e-5, rtol=0)
    torch.testing.assert_close(seen["fc0"], d["mapping/fc0_out"], atol=2e-5, rtol=0)
    assert torch.equal(m.w_avg, d["mapping/w_avg"])


def test_cutoff_leaves_late_ws_untruncated(small):
    g, d = small
    full = g.mapping(d["mapping/z"], d["mapping/c"])
    cut = g.mapping(d["mapping/z"], d["mapping/c"], truncation_psi=0.5, truncation_cutoff=8)
    assert torch.equal(cut[:, 8:], full[:, 8:])
    torch.testing.assert_close(cut[:, :8], m_lerp(g, full[:, :8], 0.5))


def m_lerp(g, w, psi):
    return g.backbone.mapping.w_avg + psi * (w - g.backbone.mapping.w_avg)


def test_fc_reset_parameters_is_seeded_and_scaled():
    fc = FullyConnectedLayer(300, 200, lr_multiplier=0.01, bias_init=1.0)
    fc.reset_parameters(torch.Generator().manual_seed(7))
    w1 = fc.weight.detach().clone()
    fc.reset_parameters(torch.Generator().manual_seed(7))
    assert torch.equal(w1, fc.weight)
    assert abs(float(w1.std()) - 100.0) < 2.0  # N(0,1) / lr_mul
    assert torch.equal(fc.bias, torch.full([200], 100.0))  # bias_init / lr_mul


def test_mapping_network_state_dict_order_and_validation():
    m = MappingNetwork(z_dim=8, c_dim=3, w_dim=6, num_ws=4, num_layers=2)
    assert list(m.state_dict()) == ["w_avg", "embed.weight", "embed.bias", "fc0.weight", "fc0.bias", "fc1.weight",
                                    "fc1.bias"]
    assert m.fc0.weight.shape == (6, 14)  # z (8) + embedded c (w_dim 6)
    with pytest.raises(ValueError, match="z must be"):
        m(torch.zeros(2, 7), torch.zeros(2, 3))
